"""FileDevice against a real temporary file: data lands where asked, errors are statuses."""

from __future__ import annotations

import asyncio
import ctypes
from pathlib import Path

import pytest

from backend.blockio import Op, Status
from backend.devices.file import FileDevice


class AlignedBuf:
    """A 4096-aligned buffer, so the O_DIRECT descriptor is the one used."""

    def __init__(self, size: int, fill: int = 0) -> None:
        self._raw = ctypes.create_string_buffer(size + 4096)
        self.addr = (ctypes.addressof(self._raw) + 4095) & ~4095
        self.size = size
        ctypes.memset(self.addr, fill, size)

    def data(self) -> bytes:
        return ctypes.string_at(self.addr, self.size)


async def _io(dev: FileDevice, op: Op, off: int, bufs: list[AlignedBuf]) -> Status:
    fut: asyncio.Future[Status] = asyncio.get_running_loop().create_future()
    iovs = [(b.addr, b.size) for b in bufs]
    dev.submit(op, off, sum(b.size for b in bufs), iovs, fut.set_result)
    return await asyncio.wait_for(fut, 5)


def test_write_then_read_round_trip(tmp_path: Path) -> None:
    img = tmp_path / "disk.img"
    img.write_bytes(b"\0" * (1 << 20))

    async def main() -> None:
        dev = FileDevice("f", img)
        try:
            assert dev.size == 1 << 20
            a, b = AlignedBuf(4096, 0xAB), AlignedBuf(8192, 0xCD)
            assert await _io(dev, Op.WRITE, 8192, [a, b]) is Status.OK
            assert await _io(dev, Op.FLUSH, 0, []) is Status.OK
            r1, r2 = AlignedBuf(512), AlignedBuf(12288 - 512)
            assert await _io(dev, Op.READ, 8192, [r1, r2]) is Status.OK
            assert r1.data() + r2.data() == b"\xab" * 4096 + b"\xcd" * 8192
        finally:
            dev.close()

    asyncio.run(main())
    assert img.read_bytes()[8192:8192 + 4096] == b"\xab" * 4096


def test_unaligned_buffers_use_buffered_path(tmp_path: Path) -> None:
    img = tmp_path / "disk.img"
    img.write_bytes(bytes(range(256)) * 16)

    async def main() -> None:
        dev = FileDevice("f", img)
        try:
            raw = ctypes.create_string_buffer(1024 + 3)
            addr = ctypes.addressof(raw) + 3  # deliberately misaligned
            fut: asyncio.Future[Status] = asyncio.get_running_loop().create_future()
            dev.submit(Op.READ, 512, 512, [(addr, 512)], fut.set_result)
            assert await asyncio.wait_for(fut, 5) is Status.OK
            assert ctypes.string_at(addr, 512) == bytes(range(256)) * 2
        finally:
            dev.close()

    asyncio.run(main())


def test_read_only_refuses_writes(tmp_path: Path) -> None:
    img = tmp_path / "disk.img"
    img.write_bytes(b"\0" * 4096)

    async def main() -> None:
        dev = FileDevice("f", img, read_only=True)
        try:
            assert await _io(dev, Op.WRITE, 0, [AlignedBuf(512)]) is Status.EROFS
        finally:
            dev.close()

    asyncio.run(main())


def test_read_past_end_is_eio(tmp_path: Path) -> None:
    img = tmp_path / "disk.img"
    img.write_bytes(b"\0" * 4096)

    async def main() -> None:
        dev = FileDevice("f", img)
        try:
            assert await _io(dev, Op.READ, 4096, [AlignedBuf(512)]) is Status.EIO
        finally:
            dev.close()

    asyncio.run(main())


@pytest.mark.parametrize("op", [Op.DISCARD, Op.WRITE_ZEROES])
def test_discard_and_write_zeroes_zero_the_range(tmp_path: Path, op: Op) -> None:
    img = tmp_path / "disk.img"
    img.write_bytes(b"\xff" * 65536)

    async def main() -> None:
        dev = FileDevice("f", img)
        try:
            fut: asyncio.Future[Status] = asyncio.get_running_loop().create_future()
            dev.submit(op, 4096, 8192, [], fut.set_result)
            assert await asyncio.wait_for(fut, 5) is Status.OK
        finally:
            dev.close()

    asyncio.run(main())
    data = img.read_bytes()
    assert data[4096:12288] == b"\0" * 8192
    assert data[:4096] == b"\xff" * 4096 and data[12288:] == b"\xff" * (65536 - 12288)
