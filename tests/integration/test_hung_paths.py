"""Multipath over real NBD paths that hang (qemu-storage-daemon frozen by SIGSTOP):
the NBD per-request timeout ends the stuck requests with a path error, multipath
retries them on the other path; with every path hung and no queue_if_no_path the
caller gets EIO instead of waiting forever. No guest: the mapped device is driven
directly, with real servers and real sockets."""

from __future__ import annotations

import asyncio
import ctypes
from collections.abc import Iterator
from pathlib import Path

import pytest

from backend.blockio import Bio, Op, Status
from backend.devices.nbd import NbdDevice
from backend.devices.schemes import open_uri
from backend.dm import MappedDevice, parse_table
from qmp_scenarios.nbd_server import NbdServer

IMAGE = 8 << 20
TIMEOUT = 1.0


@pytest.fixture
def image(tmp_path: Path) -> Iterator[Path]:
    img = tmp_path / "disk.img"
    with img.open("wb") as f:
        f.truncate(IMAGE)
    yield img


async def write(md: MappedDevice, sector: int, fill: int) -> Status:
    """One 64 KiB write through the mapped device; its final status."""
    raw = ctypes.create_string_buffer(bytes([fill]) * 65536)
    done: asyncio.Future[Status] = asyncio.get_running_loop().create_future()
    md.submit_bio(Bio(Op.WRITE, sector, 128, [(ctypes.addressof(raw), 65536)],
                      lambda st, _keep=raw: done.set_result(st)))
    return await done


async def two_paths(tmp_path: Path, image: Path, features: str
                    ) -> tuple[list[NbdServer], dict[str, NbdDevice], MappedDevice]:
    servers = [NbdServer(tmp_path, f"p{i}", image, timeout=TIMEOUT) for i in range(2)]
    for srv in servers:
        await srv.start()
    devs: dict[str, NbdDevice] = {}
    for srv in servers:
        dev = await open_uri(srv.name, srv.uri)
        assert isinstance(dev, NbdDevice)
        devs[srv.name] = dev
    md = MappedDevice("mp")
    md.create(parse_table(f"0 {IMAGE // 512} multipath {features} 0 1 1 round-robin 0 "
                          f"2 0 p0 p1", devs.__getitem__))
    return servers, devs, md


async def stop(servers: list[NbdServer], devs: dict[str, NbdDevice]) -> None:
    for srv in servers:
        if srv.running:
            srv.daemon.pause(False)
        await srv.stop()
    for dev in devs.values():
        dev.close()


def test_io_on_a_hung_path_fails_over_within_the_timeout(tmp_path: Path,
                                                         image: Path) -> None:
    async def main() -> None:
        servers, devs, md = await two_paths(tmp_path, image, "0")
        try:
            servers[0].daemon.pause(True)
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            sts = await asyncio.wait_for(asyncio.gather(
                *(write(md, i * 128, 5) for i in range(16))), 15 * TIMEOUT)
            assert set(sts) == {Status.OK}
            # the 1 s timeout failed them over, long before the 30 s default would have
            assert TIMEOUT <= loop.time() - t0 < 15 * TIMEOUT
            assert devs["p0"].timeouts == 1 and not devs["p0"].connected
            assert " p0 F " in md.status()  # dm-mpath status: path p0 failed
        finally:
            await stop(servers, devs)
        assert image.read_bytes()[15 * 65536:16 * 65536] == b"\x05" * 65536

    asyncio.run(main())


def test_every_path_hung_without_queueing_is_eio_not_a_hang(tmp_path: Path,
                                                            image: Path) -> None:
    async def main() -> None:
        servers, devs, md = await two_paths(tmp_path, image, "0")
        try:
            for srv in servers:
                srv.daemon.pause(True)
            sts = await asyncio.wait_for(asyncio.gather(
                *(write(md, i * 128, 6) for i in range(16))), 15 * TIMEOUT)
            assert set(sts) == {Status.EIO}
            assert all(d.timeouts == 1 for d in devs.values())
        finally:
            await stop(servers, devs)

    asyncio.run(main())
