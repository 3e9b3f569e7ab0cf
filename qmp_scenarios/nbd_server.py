"""A real NBD server for a path: one qemu-storage-daemon process exporting an image.

Paths die for real: ``kill()`` SIGKILLs the server (its connections drop mid-I/O),
``remove_export()`` asks it over its own QMP monitor to drop the export, and ``start()``
brings a killed server back on the same socket. Several servers can export the same raw
image (image locking is off) so that they are two paths to one disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from pathlib import Path

from qemu.qmp import QMPClient

log = logging.getLogger(__name__)


class NbdServerError(Exception):
    """The NBD server could not be started or controlled."""


class NbdServer:
    """qemu-storage-daemon serving ``image`` as NBD export ``export`` on a unix socket."""

    def __init__(self, workdir: Path, name: str, image: Path, export: str = "disk",
                 *, direct: bool = True) -> None:
        self.name = name
        self.image = image
        self.export = export
        self.direct = direct
        self.dir = workdir / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.socket = self.dir / "nbd.sock"
        self.qmp_socket = self.dir / "qmp.sock"
        self.pidfile = self.dir / "qsd.pid"
        self.log = self.dir / "qsd.log"
        self.pid: int | None = None

    @property
    def uri(self) -> str:
        return f"nbd+unix:///{self.export}?socket={self.socket}"

    def argv(self) -> list[str]:
        cache = "on" if self.direct else "off"
        return [
            "qemu-storage-daemon",
            "--blockdev", f"driver=file,node-name=file0,filename={self.image},"
                          f"cache.direct={cache},locking=off,aio=threads",
            "--blockdev", "driver=raw,node-name=disk0,file=file0",
            "--nbd-server", f"addr.type=unix,addr.path={self.socket},max-connections=0",
            "--export", f"type=nbd,id=exp0,node-name=disk0,name={self.export},writable=on",
            "--chardev", f"socket,id=mon0,path={self.qmp_socket},server=on,wait=off",
            "--monitor", "chardev=mon0",
            "--pidfile", str(self.pidfile),
            "--daemonize",
        ]

    async def start(self, timeout: float = 20.0) -> None:
        """Start the server; returns when its socket accepts (``--daemonize`` returns
        only after the exports are set up)."""
        for p in (self.socket, self.qmp_socket, self.pidfile):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
        with self.log.open("ab") as logf:
            proc = await asyncio.create_subprocess_exec(
                *self.argv(), stdout=logf, stderr=logf, stdin=asyncio.subprocess.DEVNULL)
            try:
                rc = await asyncio.wait_for(proc.wait(), timeout)
            except TimeoutError as e:
                proc.kill()
                raise NbdServerError(f"{self.name}: qemu-storage-daemon did not start "
                                     f"within {timeout}s") from e
        if rc != 0:
            tail = self.log.read_text(errors="replace")[-2000:]
            raise NbdServerError(f"{self.name}: qemu-storage-daemon exited {rc}: {tail}")
        self.pid = int(self.pidfile.read_text().strip())
        log.info("NBD path %s up (pid %d, %s)", self.name, self.pid, self.uri)

    def kill(self) -> None:
        """SIGKILL the server: the path dies mid-I/O, as an unplugged path does."""
        if self.pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        log.info("NBD path %s killed (pid %d)", self.name, self.pid)
        self.pid = None

    async def wait_dead(self, pid: int, timeout: float = 10.0) -> None:
        """Wait until ``pid`` is gone (pidfd readiness, no polling)."""
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            return
        loop = asyncio.get_running_loop()
        gone = loop.create_future()
        loop.add_reader(fd, gone.set_result, None)
        try:
            await asyncio.wait_for(gone, timeout)
        finally:
            loop.remove_reader(fd)
            os.close(fd)

    async def remove_export(self, timeout: float = 10.0) -> None:
        """Drop the export over the server's own QMP (connections are closed)."""
        qmp = QMPClient(f"nbd-{self.name}")
        await asyncio.wait_for(qmp.connect(str(self.qmp_socket)), timeout)
        try:
            await qmp.execute("block-export-del", {"id": "exp0", "mode": "hard"})
        finally:
            await qmp.disconnect()

    async def stop(self) -> None:
        pid = self.pid
        self.kill()
        if pid is not None:
            await self.wait_dead(pid)
