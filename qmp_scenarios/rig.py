"""The rig a scenario runs on: a vudm daemon (its own process, driven over QMP), a guest,
NBD path servers over a shared disk image, and the recorder of steps and evidence.

Only public interfaces are used: ``vudm serve`` and QMP for the daemon, guests/ for the
guest, qemu-storage-daemon for the paths. Each rig has its own work directory, so rigs
in parallel pytest workers never share a socket or a log.

The daemon runs with a state directory (``workdir/state``), so a scenario can kill it
(``kill_daemon``) and start it again (``restart_daemon``) on the same QMP socket: the
rig's QMP client reconnects and its event log goes on, in order; the counters read just
before each kill are banked (``bank_counters``) and count in the scenario's evidence.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

from qemu.qmp import QMPClient

from backend.images import allocate_image
from guests.machine import Guest
from vudm_testing.daemon import DaemonProcess

from .dm_backends import DmBackend, make_backend
from .events import EventLog
from .evidence import Counters, add_counters, counters_from
from .nbd_server import NbdServer
from .netns import NetRig
from .result import EventRecord, Recorder, ScenarioResult

log = logging.getLogger(__name__)


class Rig:
    """``async with Rig(workdir, result) as rig:`` starts vudm; steps add the rest."""

    def __init__(self, workdir: Path, result: ScenarioResult, *, image_mb: int = 256,
                 checker_interval: float = 0.5, guest: Guest | None = None,
                 network: bool = False, oracle: str = "vudm") -> None:
        self.workdir = workdir
        self.result = result
        self.rec = Recorder(result)
        self.image_mb = image_mb
        self.image = workdir / "disk.img"
        self.checker_interval = checker_interval
        self.run_dir: Path
        """Where the rig's sockets go (``short_run_dir``): made on entry, removed on exit."""
        self._run_dir = contextlib.ExitStack()
        self.net = NetRig() if network else None
        """With ``network``: the daemon runs in the rig's client network namespace, and
        paths added with ``add_nbd_path(..., network=True)`` are nbd:// in their own."""
        self.state_dir = workdir / "state"
        self.vudm: DaemonProcess
        """The rig's ``vudm serve`` (made on entry: its QMP socket is in ``run_dir``)."""
        self.paths: dict[str, NbdServer] = {}
        self.guest: Guest | None = guest
        # A guest handed in (a pytest worker's shared guest) is the caller's: the rig
        # unplugs what it plugged but never stops it.
        self.owns_guest = guest is None
        self._client: QMPClient | None = None
        self._events: EventLog | None = None
        self.banked: Counters = {}
        """Counters read just before the daemon was killed (bank_counters), by owner."""
        self.oracle = oracle
        self.dm: DmBackend = make_backend(oracle, self)
        """Who answers the dm steps: vudm (QMP) or the guest kernel (dmsetup)."""

    async def __aenter__(self) -> Rig:
        self.workdir.mkdir(parents=True, exist_ok=True)
        allocate_image(self.image, self.image_mb << 20)
        self.run_dir = self._run_dir.enter_context(short_run_dir(self.workdir))
        self.vudm = DaemonProcess(self.run_dir / "vudm", log_path=self.workdir / "vudm.log",
                                  extra_args=self._daemon_args(self.state_dir),
                                  prefix=self.net.exec_prefix() if self.net else ())
        try:
            if self.net is not None:
                await self.net.__aenter__()
            await self.vudm.start()
            self._client = QMPClient("scenario")
            await self._client.connect(str(self.vudm.qmp_path))
        except BaseException as e:
            # No ``async with`` body will run, so no __aexit__: undo what started here
            # (each step of it is safe on a part that never started).
            await self.__aexit__(type(e), e, e.__traceback__)
            raise
        self._events = EventLog(self._client)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        if self.guest is not None and self.owns_guest:
            with contextlib.suppress(Exception):
                await self.guest.stop()
        elif self.guest is not None:
            await hand_back(self.guest)
        if self._events is not None:
            await self._events.close()
        if self._client is not None:
            with contextlib.suppress(Exception):
                await self._client.disconnect()
        with contextlib.suppress(Exception):
            await self.vudm.stop()
        for srv in self.paths.values():
            with contextlib.suppress(Exception):
                await srv.stop()
        if self.net is not None:
            await self.net.close()
        self._run_dir.close()

    def _daemon_args(self, state_dir: Path | None) -> tuple[str, ...]:
        args: tuple[str, ...] = ("--checker-interval", str(self.checker_interval))
        if state_dir is not None:
            args += ("--state-dir", str(state_dir))
        return args

    def signal_daemon(self, sig: signal.Signals) -> None:
        """Send ``sig`` to the daemon and return at once (SIGTERM: it starts draining)."""
        proc = self.vudm.proc
        if proc is None or proc.returncode is not None:
            raise RuntimeError("the vudm daemon is not running")
        proc.send_signal(sig)

    async def kill_daemon(self, sig: signal.Signals = signal.SIGKILL) -> int:
        """Bank the daemon's counters, send ``sig``, wait for it to exit; return its exit
        status (``-9`` for SIGKILL). The QMP client is left disconnected."""
        await self.bank_counters()
        self.signal_daemon(sig)
        assert self.vudm.proc is not None
        code = await self.vudm.proc.wait()
        if self._client is not None:
            with contextlib.suppress(Exception):  # it reports the hang-up it saw
                await self._client.disconnect()
        return code

    async def restart_daemon(self, *, keep_state: bool = True) -> float:
        """Start the daemon again on the same QMP socket and reconnect the rig's client;
        returns the seconds from spawn to a negotiated QMP session.

        ``keep_state=False`` starts it on a new, empty state directory: the daemon comes
        back knowing nothing, as one without ``--state-dir`` would.
        """
        if self.vudm.proc is not None and self.vudm.proc.returncode is None:
            raise RuntimeError("the vudm daemon is still running (kill_daemon first)")
        if not keep_state:
            self.state_dir = self.workdir / f"state-fresh-{time.monotonic_ns()}"
            self.vudm.extra_args = self._daemon_args(self.state_dir)
        t0 = time.monotonic()
        await self.vudm.start()
        assert self._client is not None
        await self._client.connect(str(self.vudm.qmp_path))
        return time.monotonic() - t0

    @property
    def events(self) -> EventLog:
        assert self._events is not None, "rig not started"
        return self._events

    async def qmp(self, command: str, arguments: dict[str, Any] | None = None) -> Any:
        """Run one vudm QMP command (raises qemu.qmp's ExecuteError on a QMP error)."""
        assert self._client is not None, "rig not started"
        return await self._client.execute(command, arguments)

    async def read_counters(self) -> Counters:
        """The daemon's evidence counters now: every mapped device's ``stats`` and every
        export's ``query-exports`` entry (keys ``NAME`` and ``export:ID``)."""
        return counters_from(await self.qmp("query-dm"), await self.qmp("query-exports"))

    async def bank_counters(self) -> Counters:
        """Read the counters and keep them: call this just before killing the daemon,
        whose counters restart at zero; the scenario's evidence is the sum of every
        banked reading and the final one. Returns what was read."""
        now = await self.read_counters()
        add_counters(self.banked, now)
        return now

    def event_records(self) -> list[EventRecord]:
        """The daemon's events so far, timed by its own timestamps (for the timeline)."""
        if self._events is None:
            return []
        out = []
        for ev in self._events.events:
            stamp = ev.get("timestamp", {})
            wall = float(stamp.get("seconds", 0)) + float(stamp.get("microseconds", 0)) / 1e6
            out.append(EventRecord(self.rec.since_start(wall), str(ev.get("event", "")),
                                   dict(ev.get("data", {}))))
        return out

    async def final_counters(self) -> Counters:
        """What the scenario's evidence is judged on: the banked counters plus the
        daemon's current ones (the banked ones alone if it cannot answer)."""
        total: Counters = {k: dict(v) for k, v in self.banked.items()}
        try:
            now = await self.read_counters()
        except Exception as e:  # a dead daemon at the end is a failed step elsewhere
            log.warning("reading the daemon's counters failed: %s", e)
            return total
        add_counters(total, now)
        return total

    def socket_path(self, name: str) -> Path:
        """Where a rig socket (an export, a path server) goes: short enough for AF_UNIX."""
        return self.run_dir / name

    def need_guest(self) -> Guest:
        if self.guest is None:
            raise RuntimeError("this step needs a booted guest (boot_guest first)")
        return self.guest


async def hand_back(guest: Guest) -> None:
    """Leave a shared guest as it was lent: no fio running, no disk plugged (done while
    the daemon still serves them, so the guest lets go cleanly). Failures are only
    logged: whoever owns the guest sees the disks left in ``plugged_disks()``."""
    with contextlib.suppress(Exception):
        await guest.run("killall -9 fio 2>/dev/null; true", 30)
    for disk_id in guest.plugged_disks():
        try:
            await guest.unplug(disk_id)
        except Exception as e:
            log.warning("shared guest: unplugging %s failed: %s", disk_id, e)


_SUN_PATH_BUDGET = 60
"""Leave room below AF_UNIX's 108 bytes for names like ``paths/p0/nbd.sock``."""


@contextlib.contextmanager
def short_run_dir(workdir: Path) -> Iterator[Path]:
    """``with short_run_dir(workdir) as run:`` a directory for unix sockets: ``workdir/run``,
    or, when that path is too long for AF_UNIX (avocado's and pytest's work dirs can be), a
    short temp dir linked from there.

    The one owner of that temp dir: leaving the block removes it and its link, because
    nothing else would (it is outside every work dir a harness cleans). It removes only
    what it made: ``workdir/run`` as a plain directory is the caller's, with ``workdir``.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    run = workdir / "run"
    if len(str(run)) <= _SUN_PATH_BUDGET:
        run.mkdir(exist_ok=True)
        yield run
        return
    short = Path(tempfile.mkdtemp(prefix="vudm-rig-"))
    linked = not os.path.lexists(run)
    if linked:
        run.symlink_to(short)
    try:
        yield short
    finally:
        shutil.rmtree(short, ignore_errors=True)
        if linked:
            run.unlink(missing_ok=True)
