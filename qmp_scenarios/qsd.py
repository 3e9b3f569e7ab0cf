"""A qemu-storage-daemon process: started daemonized (it returns once its exports are
up), SIGKILLed for real, its CPU time read from /proc, its own QMP monitor at hand."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from pathlib import Path

from qemu.qmp import QMPClient

log = logging.getLogger(__name__)

CLK_TCK = os.sysconf("SC_CLK_TCK")


class StorageDaemonError(Exception):
    """qemu-storage-daemon could not be started or controlled."""


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a whole process (all its threads), from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


async def wait_pid_gone(pid: int, timeout: float = 10.0) -> None:
    """Wait until ``pid`` has exited (pidfd readiness, no polling)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    loop = asyncio.get_running_loop()
    gone: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        if not gone.done():
            gone.set_result(None)

    loop.add_reader(fd, readable)
    try:
        await asyncio.wait_for(gone, timeout)
    finally:
        loop.remove_reader(fd)
        os.close(fd)


class StorageDaemon:
    """One qemu-storage-daemon with the given ``--blockdev``/``--export``/... arguments."""

    def __init__(self, rundir: Path, args: list[str], *,
                 prefix: tuple[str, ...] = ()) -> None:
        self.dir = rundir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.args = args
        self.prefix = prefix
        """argv prefix, e.g. ``ip netns exec NS`` to serve from a network namespace."""
        self.qmp_socket = self.dir / "qmp.sock"
        self.pidfile = self.dir / "qsd.pid"
        self.log = self.dir / "qsd.log"
        self.pid: int | None = None

    def argv(self) -> list[str]:
        return [*self.prefix, "qemu-storage-daemon", *self.args,
                "--chardev", f"socket,id=mon0,path={self.qmp_socket},server=on,wait=off",
                "--monitor", "chardev=mon0",
                "--pidfile", str(self.pidfile), "--daemonize"]

    async def start(self, timeout: float = 20.0) -> None:
        """Start; returns once the daemon is up (``--daemonize`` waits for that)."""
        for p in (self.qmp_socket, self.pidfile):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
        with self.log.open("ab") as logf:
            proc = await asyncio.create_subprocess_exec(
                *self.argv(), stdout=logf, stderr=logf, stdin=asyncio.subprocess.DEVNULL)
            try:
                rc = await asyncio.wait_for(proc.wait(), timeout)
            except TimeoutError as e:
                proc.kill()
                raise StorageDaemonError(f"qemu-storage-daemon in {self.dir} did not start "
                                         f"within {timeout}s") from e
        if rc != 0:
            tail = self.log.read_text(errors="replace")[-2000:]
            raise StorageDaemonError(f"qemu-storage-daemon exited {rc}: {tail}")
        self.pid = int(self.pidfile.read_text().strip())

    def kill(self) -> int | None:
        """SIGKILL the daemon; returns the pid it had (to wait on), or None."""
        pid, self.pid = self.pid, None
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return pid

    def pause(self, paused: bool) -> None:
        """SIGSTOP / SIGCONT: I/O to a paused server hangs instead of failing."""
        if self.pid is None:
            raise StorageDaemonError("qemu-storage-daemon is not running")
        os.kill(self.pid, signal.SIGSTOP if paused else signal.SIGCONT)

    async def stop(self, timeout: float = 10.0) -> None:
        pid = self.kill()
        if pid is not None:
            await wait_pid_gone(pid, timeout)

    def cpu_seconds(self) -> float:
        if self.pid is None:
            raise StorageDaemonError("qemu-storage-daemon is not running")
        return process_cpu_seconds(self.pid)

    async def qmp(self, command: str, arguments: dict[str, object] | None = None,
                  timeout: float = 10.0) -> object:
        """Run one command on the daemon's own QMP monitor."""
        client = QMPClient(f"qsd-{self.dir.name}")
        await asyncio.wait_for(client.connect(str(self.qmp_socket)), timeout)
        try:
            return await asyncio.wait_for(client.execute(command, arguments), timeout)
        finally:
            await client.disconnect()
