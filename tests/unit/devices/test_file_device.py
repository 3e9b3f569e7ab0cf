"""FileDevice against a real temporary file: data lands where asked, errors are statuses.

Every test runs on both engines (``aio=native`` and ``aio=threads``).
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import logging
import os
from pathlib import Path

import pytest

from backend.blockio import Op, Status
from backend.devices import file as file_mod
from backend.devices.file import AIO_ENGINES, AioEngine, FileDevice
from backend.devices.schemes import open_uri
from backend.errors import DeviceError


@pytest.fixture(params=AIO_ENGINES)
def aio(request: pytest.FixtureRequest) -> AioEngine:
    engine: AioEngine = request.param
    return engine


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


def test_write_then_read_round_trip(tmp_path: Path, aio: AioEngine) -> None:
    img = tmp_path / "disk.img"
    img.write_bytes(b"\0" * (1 << 20))

    async def main() -> None:
        dev = FileDevice("f", img, aio=aio)
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


def test_unaligned_buffers_use_buffered_path(tmp_path: Path, aio: AioEngine) -> None:
    img = tmp_path / "disk.img"
    img.write_bytes(bytes(range(256)) * 16)

    async def main() -> None:
        dev = FileDevice("f", img, aio=aio)
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


def test_read_only_refuses_writes(tmp_path: Path, aio: AioEngine) -> None:
    img = tmp_path / "disk.img"
    img.write_bytes(b"\0" * 4096)

    async def main() -> None:
        dev = FileDevice("f", img, read_only=True, aio=aio)
        try:
            assert await _io(dev, Op.WRITE, 0, [AlignedBuf(512)]) is Status.EROFS
        finally:
            dev.close()

    asyncio.run(main())


def test_read_past_end_is_eio(tmp_path: Path, aio: AioEngine) -> None:
    img = tmp_path / "disk.img"
    img.write_bytes(b"\0" * 4096)

    async def main() -> None:
        dev = FileDevice("f", img, aio=aio)
        try:
            assert await _io(dev, Op.READ, 4096, [AlignedBuf(512)]) is Status.EIO
        finally:
            dev.close()

    asyncio.run(main())


@pytest.mark.parametrize("op", [Op.DISCARD, Op.WRITE_ZEROES])
def test_discard_and_write_zeroes_zero_the_range(
    tmp_path: Path, op: Op, aio: AioEngine
) -> None:
    img = tmp_path / "disk.img"
    img.write_bytes(b"\xff" * 65536)

    async def main() -> None:
        dev = FileDevice("f", img, aio=aio)
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


def test_more_requests_than_aio_slots_all_land(tmp_path: Path, aio: AioEngine) -> None:
    """300 writes at once (over AIO_DEPTH), then 300 reads: every block holds its own byte."""
    img = tmp_path / "disk.img"
    nblocks = 300
    img.write_bytes(b"\0" * (nblocks * 4096))

    async def main() -> None:
        dev = FileDevice("f", img, aio=aio)
        loop = asyncio.get_running_loop()
        try:
            wbufs = [AlignedBuf(4096, i % 251) for i in range(nblocks)]
            futs = []
            for i, b in enumerate(wbufs):
                fut: asyncio.Future[Status] = loop.create_future()
                dev.submit(Op.WRITE, i * 4096, 4096, [(b.addr, 4096)], fut.set_result)
                futs.append(fut)
            assert await asyncio.wait_for(asyncio.gather(*futs), 10) == [Status.OK] * nblocks
            rbufs = [AlignedBuf(4096) for _ in range(nblocks)]
            futs = []
            for i, b in enumerate(rbufs):
                fut = loop.create_future()
                dev.submit(Op.READ, i * 4096, 4096, [(b.addr, 4096)], fut.set_result)
                futs.append(fut)
            assert await asyncio.wait_for(asyncio.gather(*futs), 10) == [Status.OK] * nblocks
            assert [b.data() for b in rbufs] == [bytes([i % 251]) * 4096 for i in range(nblocks)]
        finally:
            dev.close()

    asyncio.run(main())


def test_close_delivers_in_flight_completions(tmp_path: Path, aio: AioEngine) -> None:
    img = tmp_path / "disk.img"
    img.write_bytes(b"\x5a" * (64 * 4096))
    statuses: list[Status] = []

    async def main() -> None:
        dev = FileDevice("f", img, aio=aio)
        bufs = [AlignedBuf(4096) for _ in range(64)]
        for i, b in enumerate(bufs):
            dev.submit(Op.READ, i * 4096, 4096, [(b.addr, 4096)], statuses.append)
        dev.close()
        assert statuses == [Status.OK] * 64
        assert all(b.data() == b"\x5a" * 4096 for b in bufs)
        dev.submit(Op.READ, 0, 4096, [(bufs[0].addr, 4096)], statuses.append)
        assert statuses[-1] is Status.ENOLINK

    asyncio.run(main())


def test_engine_in_use(tmp_path: Path) -> None:
    img = tmp_path / "disk.img"
    img.write_bytes(b"\0" * 4096)
    try:
        os.close(os.open(img, os.O_RDONLY | os.O_DIRECT))
    except OSError as e:
        pytest.skip(f"no O_DIRECT on the temporary directory's file system: {e.strerror}")

    async def main() -> None:
        for kwargs, engine in [({}, "native"), ({"aio": "threads"}, "threads"),
                               ({"direct": False}, "threads")]:
            dev = FileDevice("f", img, **kwargs)  # type: ignore[arg-type]
            try:
                assert dev.aio == engine, kwargs
            finally:
                dev.close()

    asyncio.run(main())


def test_unknown_engine_is_a_device_error(tmp_path: Path) -> None:
    img = tmp_path / "disk.img"
    img.write_bytes(b"\0" * 4096)

    async def main() -> None:
        with pytest.raises(DeviceError, match="unknown aio engine 'io_uring'"):
            FileDevice("f", img, aio="io_uring")  # type: ignore[arg-type]

    asyncio.run(main())


def test_no_aio_context_falls_back_to_threads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """io_setup failing (aio-max-nr used up) leaves a working device on threads, said once."""
    img = tmp_path / "disk.img"
    img.write_bytes(b"\x11" * 4096)

    def no_context(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EAGAIN, "io_setup(128): Resource temporarily unavailable")

    monkeypatch.setattr(file_mod, "AioContext", no_context)
    monkeypatch.setattr(file_mod, "_aio_unavailable_logged", False)

    async def main() -> None:
        devs = [FileDevice(f"f{i}", img) for i in range(2)]
        try:
            assert [d.aio for d in devs] == ["threads", "threads"]
            buf = AlignedBuf(4096)
            assert await _io(devs[1], Op.READ, 0, [buf]) is Status.OK
            assert buf.data() == b"\x11" * 4096
        finally:
            for d in devs:
                d.close()

    with caplog.at_level(logging.WARNING):
        asyncio.run(main())
    assert [r.getMessage() for r in caplog.records if "AIO" in r.getMessage()] == [
        "f0: no Linux AIO context (io_setup(128): Resource temporarily unavailable; "
        "see /proc/sys/fs/aio-max-nr); file devices use worker threads"]


def test_uri_query_picks_the_engine(tmp_path: Path) -> None:
    img = tmp_path / "disk.img"
    img.write_bytes(b"\0" * 4096)

    async def main() -> None:
        for query, engine in [("", "native"), ("?aio=native", "native"),
                              ("?aio=threads", "threads")]:
            dev = await open_uri("f", f"file:{img}{query}")
            assert isinstance(dev, FileDevice)
            try:
                assert dev.aio == engine, query
                assert dev.path == img
            finally:
                dev.close()
        for query in ["?aio=io_uring", "?cache=none", "?aio=threads&x=1"]:
            with pytest.raises(DeviceError, match=r"file: takes only \?aio=native or "):
                await open_uri("f", f"file:{img}{query}")

    asyncio.run(main())
