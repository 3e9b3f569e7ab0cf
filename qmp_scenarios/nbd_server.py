"""A real NBD server for a path: one qemu-storage-daemon exporting an image over NBD.

Paths die for real: ``kill()`` SIGKILLs the server (its connections drop mid-I/O),
``remove_export()`` asks it over its own QMP monitor to drop the export, and ``start()``
brings a killed server back on the same socket. With ``net`` (a
:class:`~qmp_scenarios.netns.NetPath`), the server listens on TCP inside the path's own
network namespace instead, and the path can also die by partition. Several servers can
export the same raw image (image locking is off) so that they are several paths to one
disk.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

from .netns import NBD_PORT, NetPath
from .qsd import StorageDaemon, wait_pid_gone

log = logging.getLogger(__name__)


class NbdServer:
    """qemu-storage-daemon serving ``image`` as NBD export ``export`` on a unix socket."""

    def __init__(self, workdir: Path, name: str, image: Path, export: str = "disk",
                 *, direct: bool = True, net: NetPath | None = None,
                 timeout: float | None = None) -> None:
        self.name = name
        self.image = image
        self.export = export
        self.net = net
        self.timeout = timeout
        """The client's per-request timeout put in ``uri`` (None: the device default)."""
        self.socket = workdir / name / "nbd.sock"
        cache = "on" if direct else "off"
        addr = (f"addr.type=inet,addr.host={net.server_addr},addr.port={NBD_PORT}"
                if net is not None else f"addr.type=unix,addr.path={self.socket}")
        self.daemon = StorageDaemon(workdir / name, [
            "--blockdev", f"driver=file,node-name=file0,filename={image},"
                          f"cache.direct={cache},locking=off,aio=threads",
            "--blockdev", "driver=raw,node-name=disk0,file=file0",
            "--nbd-server", f"{addr},max-connections=0",
            "--export", f"type=nbd,id=exp0,node-name=disk0,name={export},writable=on",
        ], prefix=("ip", "netns", "exec", net.netns) if net is not None else ())

    @property
    def uri(self) -> str:
        if self.net is not None:
            return self.net.uri(self.export, self.timeout)
        query = "" if self.timeout is None else f"&timeout={self.timeout:g}"
        return f"nbd+unix:///{self.export}?socket={self.socket}{query}"

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
