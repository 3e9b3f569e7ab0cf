"""``vudm serve`` as a child process, for scenarios, suites and tests, with qemu.qmp.

:class:`DaemonProcess` runs ``vudm serve`` as a subprocess with its QMP socket in a
directory of the caller's choosing, waits for its ready line (never a sleep), stops it
with ``quit`` or SIGTERM, and hands out negotiated ``qemu.qmp.QMPClient`` objects
(integration tests, scenarios, avocado). :class:`LivenessProbe` watches a running
daemon's loop from another process. Its child dies with its parent
(:func:`guests.lifetime.die_with_parent`), so a harness killed outright (pytest under
``timeout``) leaves no daemon behind. Everything here drives the daemon from outside, as
a user would: nothing imports the daemon's own modules (the unit tests' in-process daemon is in
tests/daemon_in_process.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from qemu.qmp import ExecuteError, QMPClient

from backend.control.client import READY
from backend.errors import ClientError
from guests.lifetime import die_with_parent

T = TypeVar("T")


def run(coro: Awaitable[T], timeout: float = 60.0) -> T:
    """``asyncio.run`` with a hard deadline, so no test can hang its suite."""

    async def bounded() -> T:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


async def error_of(client: QMPClient, cmd: str,
                   arguments: dict[str, Any] | None = None) -> tuple[str, str]:
    """Run a command that must fail; its QMP error (class, desc)."""
    try:
        result = await client.execute(cmd, arguments)
    except ExecuteError as e:
        return e.error_class, e.error.error.desc
    raise AssertionError(f"{cmd} {arguments} succeeded: {result!r}")


class DaemonProcess:
    """``vudm serve`` in a subprocess, with its QMP socket in ``sock_dir``.

    ``async with DaemonProcess(tmp) as d:`` returns once the daemon printed its ready
    line; ``d.client()`` opens a negotiated QMPClient; leaving the block sends ``quit``
    (SIGTERM if that fails, SIGKILL as the last resort) and waits for the exit.
    stderr (the daemon's log) goes to ``log_path``. The daemon dies with the process
    that started it (:func:`die_with_parent`).
    """

    def __init__(self, sock_dir: Path, *, config: Path | None = None,
                 log_path: Path | None = None, ready_timeout: float = 30.0,
                 extra_args: tuple[str, ...] = (), prefix: tuple[str, ...] = ()) -> None:
        self.sock_dir = Path(sock_dir)
        self.qmp_path = self.sock_dir / "qmp.sock"
        self.config = config
        self.log_path = log_path or self.sock_dir / "vudm.log"
        self.ready_timeout = ready_timeout
        self.extra_args = extra_args
        self.prefix = prefix
        """argv prefix, e.g. ``ip netns exec NS``: the daemon's network namespace."""
        self.proc: asyncio.subprocess.Process | None = None
        self.ready_line = ""

    @property
    def argv(self) -> list[str]:
        argv = [*self.prefix, sys.executable, "-m", "backend.control.cli", "serve",
                "--qmp", str(self.qmp_path)]
        if self.config is not None:
            argv += ["--config", str(self.config)]
        return argv + list(self.extra_args)

    async def start(self) -> None:
        """Spawn the daemon and wait for its ready line; ClientError if it dies first."""
        self.sock_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                *self.argv, stdout=asyncio.subprocess.PIPE, stderr=log,
                stdin=asyncio.subprocess.DEVNULL, cwd=_repo_root(),
                preexec_fn=die_with_parent())
        assert self.proc.stdout is not None
        try:
            line = await asyncio.wait_for(self.proc.stdout.readline(), self.ready_timeout)
        except TimeoutError:
            await self.kill()
            raise ClientError(f"vudm serve: no ready line in {self.ready_timeout}s;"
                              f" see {self.log_path}") from None
        self.ready_line = line.decode().strip()
        if not self.ready_line.startswith(READY):
            code = await self.proc.wait()
            raise ClientError(f"vudm serve exited with {code} before ready:"
                              f" {_tail(self.log_path)}")

    @asynccontextmanager
    async def client(self, name: str = "test") -> AsyncIterator[QMPClient]:
        """A negotiated QMPClient of this daemon."""
        client = QMPClient(name)
        await client.connect(str(self.qmp_path))
        try:
            yield client
        finally:
            await client.disconnect()

    async def stop(self, timeout: float = 15.0) -> int:
        """Ask the daemon to quit and wait; escalate to SIGTERM, then SIGKILL."""
        if self.proc is None:
            return 0
        if self.proc.returncode is None:
            with contextlib.suppress(Exception):
                async with self.client("stop") as c:
                    await c.execute("quit")
            try:
                await asyncio.wait_for(self.proc.wait(), timeout)
            except TimeoutError:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(self.proc.wait(), timeout)
                except TimeoutError:
                    await self.kill()
        return await self.proc.wait()

    async def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()

    async def __aenter__(self) -> DaemonProcess:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.stop()


def _repo_root() -> str:
    return os.fspath(Path(__file__).resolve().parents[1])


def _tail(path: Path, lines: int = 5) -> str:
    try:
        return " | ".join(path.read_text().splitlines()[-lines:])
    except OSError:
        return f"(no log at {path})"


class LivenessProbe:
    """A second client asking ``query-version`` back to back while something else runs.

    What it proves is the liveness of the daemon's event loop, not its speed: one probe
    is the fastest of ``rounds`` consecutive round trips, so a scheduling hiccup on a
    busy machine (which slows one round trip) does not count, while a blocked loop
    (which slows every round trip while it lasts) does. ``worst`` is the slowest probe;
    a round trip still unanswered when the probe stops counts with the time it has
    waited so far, so a daemon frozen for good cannot pass. The client runs in a child
    process (``backend.control.probe``): the test's own work cannot slow it down.

    ``async with LivenessProbe(qmp_path) as probe: ...`` then ``probe.check(0.1)``.
    """

    def __init__(self, qmp_path: str | os.PathLike[str], *, rounds: int = 3) -> None:
        self.qmp_path = os.fspath(qmp_path)
        self.rounds = rounds
        self.probes = 0
        self.worst = 0.0
        self.errors: list[str] = []
        self.timeline: list[tuple[float, float]] = []
        """(time.monotonic() when a probe ended, its latency) for every probe."""
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._tick = asyncio.Event()

    async def start(self) -> None:
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "backend.control.probe", self.qmp_path,
            "--rounds", str(self.rounds), stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, cwd=_repo_root())
        assert self._proc.stdout is not None
        line = await asyncio.wait_for(self._proc.stdout.readline(), 30.0)
        if line.strip() != b"ready":
            await self._kill()
            raise ClientError(f"liveness probe did not start: {line!r}")
        self._reader = asyncio.create_task(self._read(), name="liveness-probe")

    async def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        while line := await self._proc.stdout.readline():
            text = line.decode().strip()
            if text.startswith("pending "):
                self.worst = max(self.worst, float(text.split()[1]))
            elif text.startswith("error "):
                self.errors.append(text)
            else:
                latency, *when = (float(w) for w in text.split())
                self.probes += 1
                self.worst = max(self.worst, latency)
                if when:
                    self.timeline.append((when[0], latency))
            self._tick.set()

    async def more(self, n: int = 3, timeout: float = 10.0) -> None:
        """Wait until ``n`` more probes were answered (TimeoutError if they are not)."""
        target = self.probes + n
        async with asyncio.timeout(timeout):
            while self.probes < target:
                self._tick.clear()
                await self._tick.wait()

    async def stop(self) -> None:
        """End probing; a probe still waiting for its reply counts as that slow."""
        if self._proc is None:
            return
        assert self._proc.stdin is not None
        self._proc.stdin.close()
        try:
            await asyncio.wait_for(self._proc.wait(), 10.0)
        except TimeoutError:
            await self._kill()
        if self._reader is not None:
            await self._reader
        self._proc = None

    async def _kill(self) -> None:
        if self._proc is not None and self._proc.returncode is None:
            self._proc.kill()
            await self._proc.wait()

    async def __aenter__(self) -> LivenessProbe:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.stop()

    def check(self, limit: float = 0.1, min_probes: int = 3) -> None:
        """AssertionError unless at least ``min_probes`` probes ran, all within ``limit``."""
        assert not self.errors, f"the liveness probe failed: {self.errors}"
        assert self.probes >= min_probes, (
            f"only {self.probes} query-version probe(s) answered (want {min_probes}):"
            f" the daemon stopped answering (waited {self.worst:.3f}s)")
        assert self.worst < limit, (
            f"query-version took {self.worst * 1000:.0f} ms at worst (limit"
            f" {limit * 1000:.0f} ms): the daemon's loop was blocked")
