"""The backends ``make bench`` compares, each one process serving the image over
vhost-user-blk: started and stopped per round, its CPU time and its pid (for a hung
run's evidence) at hand, and a QMP-ish look inside it for the same evidence."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from pathlib import Path
from typing import Any, Protocol

from guests.lifetime import die_with_parent
from vudm_testing.daemon import DaemonProcess

from .bench_stats import PAIRED
from .qsd import StorageDaemon, process_cpu_seconds


class Backend(Protocol):
    label: str
    socket: Path

    @property
    def pid(self) -> int | None: ...

    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def kill(self) -> None: ...
    def cpu_seconds(self) -> float: ...
    async def inspect(self) -> Any:
        """What the backend says about its export (bounded: a wedged one may not answer)."""
        ...


class VudmBackend:
    """``vudm serve`` with a linear table over the image and one vhost-user-blk export."""

    def __init__(self, rundir: Path, image: Path, label: str = "vudm") -> None:
        self.label = label
        self.rundir = rundir / self.label
        self.rundir.mkdir(parents=True, exist_ok=True)
        self.socket = self.rundir / "blk.sock"
        self.config = self.rundir / "vudm.toml"
        sectors = image.stat().st_size // 512
        self.config.write_text(
            f'[[device]]\nname = "img"\nuri = "file:{image}"\n\n'
            f'[[dm]]\nname = "vol"\ntable = "0 {sectors} linear img 0"\n\n'
            f'[[export]]\nid = "exp"\ndm = "vol"\nsocket = "{self.socket}"\n'
            f"writable = true\n")
        self.daemon = DaemonProcess(self.rundir, config=self.config)

    @property
    def pid(self) -> int | None:
        proc = self.daemon.proc
        return proc.pid if proc is not None and proc.returncode is None else None

    async def start(self) -> None:
        self.socket.unlink(missing_ok=True)
        await self.daemon.start()

    async def stop(self) -> None:
        await self.daemon.stop()

    async def kill(self) -> None:
        await self.daemon.kill()

    def cpu_seconds(self) -> float:
        assert self.daemon.proc is not None
        return process_cpu_seconds(self.daemon.proc.pid)

    async def inspect(self) -> Any:
        async with asyncio.timeout(5.0), self.daemon.client("bench") as c:
            return {"query-exports": await c.execute("query-exports"),
                    "query-dm": await c.execute("query-dm")}


class TransportBackend:
    """vudm's vhost-user-blk transport straight on the ``file:`` device, no mapped
    device (``python -m backend.serve_file``): what vudm costs without dm."""

    label = "vudm-transport"

    def __init__(self, rundir: Path, image: Path) -> None:
        self.rundir = rundir / self.label
        self.rundir.mkdir(parents=True, exist_ok=True)
        self.socket = self.rundir / "blk.sock"
        self.image = image
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int | None:
        proc = self.proc
        return proc.pid if proc is not None and proc.returncode is None else None

    async def start(self, timeout: float = 30.0) -> None:
        self.socket.unlink(missing_ok=True)
        rfd, wfd = os.pipe()
        try:
            with (self.rundir / "serve_file.log").open("ab") as logf:
                self.proc = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "backend.serve_file", str(self.image),
                    str(self.socket), "--ready-fd", str(wfd), "--log-level", "WARNING",
                    pass_fds=(wfd,), stdin=asyncio.subprocess.DEVNULL, stdout=logf,
                    stderr=logf, preexec_fn=die_with_parent())
            os.close(wfd)
            wfd = -1
            ready = await asyncio.wait_for(asyncio.to_thread(os.read, rfd, 64), timeout)
        finally:
            os.close(rfd)
            if wfd >= 0:
                os.close(wfd)
        if not ready.startswith(b"ready"):
            await self.kill()
            raise RuntimeError(f"serve_file did not start: see {self.rundir}/serve_file.log")

    async def stop(self, timeout: float = 15.0) -> None:
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), timeout)
        except TimeoutError:
            await self.kill()

    async def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()

    def cpu_seconds(self) -> float:
        assert self.proc is not None
        return process_cpu_seconds(self.proc.pid)

    async def inspect(self) -> Any:
        return "serve_file has no monitor; see the virtqueue and the process state"


class QsdBackend:
    """qemu-storage-daemon exporting the image over vhost-user-blk."""

    def __init__(self, rundir: Path, image: Path, aio: str) -> None:
        self.label = f"qsd-{aio}"
        self.socket = rundir / self.label / "blk.sock"
        self.daemon = StorageDaemon(rundir / self.label, [
            "--blockdev", f"driver=file,node-name=file0,filename={image},"
                          f"cache.direct=on,aio={aio}",
            "--blockdev", "driver=raw,node-name=disk0,file=file0",
            "--export", f"type=vhost-user-blk,id=exp0,node-name=disk0,addr.type=unix,"
                        f"addr.path={self.socket},writable=on,num-queues=1",
        ])

    @property
    def pid(self) -> int | None:
        return self.daemon.pid

    async def start(self) -> None:
        self.socket.unlink(missing_ok=True)
        await self.daemon.start()

    async def stop(self) -> None:
        await self.daemon.stop()

    async def kill(self) -> None:
        await self.daemon.stop()  # StorageDaemon.stop is a SIGKILL and a wait

    def cpu_seconds(self) -> float:
        return self.daemon.cpu_seconds()

    async def inspect(self) -> Any:
        out: dict[str, Any] = {}
        for cmd in ("query-block-exports", "query-block", "query-iothreads"):
            try:
                out[cmd] = await self.daemon.qmp(cmd, timeout=5.0)
            except Exception as e:  # a wedged main loop not answering is evidence too
                out[cmd] = f"{type(e).__name__}: {e}"
                break
        return out


def make_units(rundir: Path, image: Path, labels: list[str]) -> list[list[Backend]]:
    """The backends of one round, grouped by guest: each alone in a fresh guest, except
    vudm-transport, which shares its guest with a second vudm (``PAIRED``) so that the
    dm layer's cost is a difference of two runs in one guest, one after the other."""
    units: list[list[Backend]] = []
    for label in labels:
        if label == "vudm":
            units.append([VudmBackend(rundir, image)])
        elif label == "vudm-transport":
            units.append([VudmBackend(rundir, image, PAIRED), TransportBackend(rundir, image)])
        elif label.startswith("qsd-"):
            units.append([QsdBackend(rundir, image, label.removeprefix("qsd-"))])
    return units


async def stop_quietly(backend: Backend, *, kill: bool) -> None:
    with contextlib.suppress(Exception):
        await (backend.kill() if kill else backend.stop())
