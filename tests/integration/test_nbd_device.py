"""NbdDevice against real qemu-storage-daemon NBD servers (no guest needed)."""

from __future__ import annotations

import asyncio
import ctypes
from pathlib import Path

import pytest

from backend.blockio import Op, Status
from backend.devices.nbd import NbdAddress, NbdDevice
from backend.devices.uri import open_uri
from backend.errors import DeviceError
from qmp_scenarios.nbd_server import NbdServer


class Buf:
    def __init__(self, size: int, fill: int = 0) -> None:
        self._raw = ctypes.create_string_buffer(size + 4096)
        self.addr = (ctypes.addressof(self._raw) + 4095) & ~4095
        self.size = size
        ctypes.memset(self.addr, fill, size)

    def data(self) -> bytes:
        return ctypes.string_at(self.addr, self.size)


async def io(dev: NbdDevice, op: Op, off: int, bufs: list[Buf]) -> Status:
    fut: asyncio.Future[Status] = asyncio.get_running_loop().create_future()
    dev.submit(op, off, sum(b.size for b in bufs), [(b.addr, b.size) for b in bufs],
               fut.set_result)
    return await asyncio.wait_for(fut, 10)


@pytest.fixture
def image(tmp_path: Path) -> Path:
    img = tmp_path / "disk.img"
    with img.open("wb") as f:
        f.truncate(8 << 20)
    return img


def test_read_write_many_in_flight(tmp_path: Path, image: Path) -> None:
    async def main() -> None:
        srv = NbdServer(tmp_path, "p0", image)
        await srv.start()
        try:
            dev = await open_uri("p0", srv.uri)
            assert isinstance(dev, NbdDevice)
            assert dev.size == 8 << 20
            bufs = [Buf(65536, i) for i in range(32)]
            sts = await asyncio.gather(*(io(dev, Op.WRITE, i * 65536, [b])
                                         for i, b in enumerate(bufs)))
            assert set(sts) == {Status.OK}
            assert await io(dev, Op.FLUSH, 0, []) is Status.OK
            reads = [Buf(65536) for _ in range(32)]
            sts = await asyncio.gather(*(io(dev, Op.READ, i * 65536, [b])
                                         for i, b in enumerate(reads)))
            assert set(sts) == {Status.OK}
            for i, b in enumerate(reads):
                assert b.data() == bytes([i]) * 65536
            dev.close()
        finally:
            await srv.stop()
        assert image.read_bytes()[65536 * 5:65536 * 6] == b"\x05" * 65536

    asyncio.run(main())


def test_killed_server_fails_inflight_then_reconnects(tmp_path: Path, image: Path) -> None:
    async def main() -> None:
        srv = NbdServer(tmp_path, "p0", image)
        await srv.start()
        dev = await open_uri("p0", srv.uri)
        assert isinstance(dev, NbdDevice)
        try:
            inflight = [io(dev, Op.WRITE, i * 1 << 20, [Buf(1 << 20, 7)]) for i in range(8)]
            tasks = [asyncio.ensure_future(t) for t in inflight]
            await srv.kill()
            sts = await asyncio.gather(*tasks)
            # every request either made it before the kill or failed as a lost path
            assert set(sts) <= {Status.OK, Status.ENOLINK}
            # the loss is seen at once: the next request fails without a timeout
            assert await io(dev, Op.READ, 0, [Buf(512)]) is Status.ENOLINK
            assert not dev.connected
            await srv.start()
            await dev.connect()
            assert await io(dev, Op.WRITE, 0, [Buf(4096, 9)]) is Status.OK
            r = Buf(4096)
            assert await io(dev, Op.READ, 0, [r]) is Status.OK
            assert r.data() == b"\x09" * 4096
        finally:
            dev.close()
            await srv.stop()

    asyncio.run(main())


def test_bad_export_name_is_a_clear_error(tmp_path: Path, image: Path) -> None:
    async def main() -> None:
        srv = NbdServer(tmp_path, "p0", image)
        await srv.start()
        try:
            addr = NbdAddress(export="nope", unix_path=str(srv.socket))
            with pytest.raises(DeviceError, match="nope"):
                await NbdDevice("x", addr).connect()
        finally:
            await srv.stop()

    asyncio.run(main())


def test_bad_uris() -> None:
    for uri, what in [("nbd+unix:///disk", "socket"), ("nbd:///disk", "host"),
                      ("bogus:/x", "unknown scheme"), ("/just/a/path", "no scheme")]:
        with pytest.raises(DeviceError, match=what):
            asyncio.run(open_uri("x", uri))
