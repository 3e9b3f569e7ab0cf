"""A real NBD server for a path: one qemu-storage-daemon exporting an image over NBD.

Paths die for real: ``kill()`` SIGKILLs the server (its connections drop mid-I/O),
``remove_export()`` asks it over its own QMP monitor to drop the export, and ``start()``
brings a killed server back on the same socket. Several servers can export the same raw
image (image locking is off) so that they are several paths to one disk.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

from .qsd import StorageDaemon, wait_pid_gone

log = logging.getLogger(__name__)


class NbdServer:
    """qemu-storage-daemon serving ``image`` as NBD export ``export`` on a unix socket."""

    def __init__(self, workdir: Path, name: str, image: Path, export: str = "disk",
                 *, direct: bool = True) -> None:
        self.name = name
        self.image = image
        self.export = export
        self.socket = workdir / name / "nbd.sock"
        cache = "on" if direct else "off"
        self.daemon = StorageDaemon(workdir / name, [
            "--blockdev", f"driver=file,node-name=file0,filename={image},"
                          f"cache.direct={cache},locking=off,aio=threads",
            "--blockdev", "driver=raw,node-name=disk0,file=file0",
            "--nbd-server", f"addr.type=unix,addr.path={self.socket},max-connections=0",
            "--export", f"type=nbd,id=exp0,node-name=disk0,name={export},writable=on",
        ])

    @property
    def uri(self) -> str:
        return f"nbd+unix:///{self.export}?socket={self.socket}"

    @property
    def pid(self) -> int | None:
        return self.daemon.pid

    @property
    def running(self) -> bool:
        return self.daemon.pid is not None

    async def start(self, timeout: float = 20.0) -> None:
        """Start (or restart) the server on the same socket."""
        with contextlib.suppress(FileNotFoundError):
            self.socket.unlink()
        await self.daemon.start(timeout)
        log.info("NBD path %s up (pid %s, %s)", self.name, self.daemon.pid, self.uri)

    async def kill(self, timeout: float = 10.0) -> None:
        """SIGKILL the server and wait until it is gone: the path dies mid-I/O."""
        pid = self.daemon.kill()
        if pid is not None:
            log.info("NBD path %s killed (pid %d)", self.name, pid)
            await wait_pid_gone(pid, timeout)

    async def remove_export(self, timeout: float = 10.0) -> None:
        """Drop the export over the server's own QMP (its connections are closed)."""
        await self.daemon.qmp("block-export-del", {"id": "exp0", "mode": "hard"}, timeout)

    async def stop(self) -> None:
        await self.daemon.stop()
