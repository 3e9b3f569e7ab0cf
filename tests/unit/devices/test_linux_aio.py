"""AioContext against a real O_DIRECT file: batching, slots, short transfers, errors."""

from __future__ import annotations

import asyncio
import ctypes
import errno
import logging
import os
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from backend.blockio import PLUG, IovArray
from backend.devices import linux_aio
from backend.devices.linux_aio import AioCallback, AioContext

BLOCK = 4096


class AlignedBuf:
    """``size`` bytes at a 4096-aligned address (O_DIRECT's requirement)."""

    def __init__(self, size: int, fill: int = 0) -> None:
        self._raw = ctypes.create_string_buffer(size + BLOCK)
        self.addr = (ctypes.addressof(self._raw) + BLOCK - 1) & ~(BLOCK - 1)
        self.size = size
        ctypes.memset(self.addr, fill, size)

    def data(self) -> bytes:
        return ctypes.string_at(self.addr, self.size)


@pytest.fixture
def image(tmp_path: Path) -> Path:
    img = tmp_path / "disk.img"
    img.write_bytes(bytes(range(256)) * 16 * 16)  # 64 KiB
    return img


@pytest.fixture
def fd(image: Path) -> Iterator[int]:
    try:
        fd = os.open(image, os.O_RDWR | os.O_DIRECT | os.O_CLOEXEC)
    except OSError as e:
        pytest.skip(f"no O_DIRECT on the temporary directory's file system: {e.strerror}")
    yield fd
    os.close(fd)


class Results:
    """Callbacks that record ``(tag, res)`` and resolve a future when ``n`` have arrived."""

    def __init__(self, n: int) -> None:
        self.got: list[tuple[int, int]] = []
        self.n = n
        self.all_in: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def callback(self, tag: int) -> AioCallback:
        def cb(res: int) -> None:
            self.got.append((tag, res))
            if len(self.got) == self.n:
                self.all_in.set_result(None)
        return cb

    async def wait(self) -> list[tuple[int, int]]:
        await asyncio.wait_for(self.all_in, 5)
        return self.got


def test_batch_goes_in_one_io_submit_and_lands(image: Path, fd: int) -> None:
    async def main() -> None:
        ctx = AioContext(asyncio.get_running_loop(), depth=16)
        try:
            res = Results(3)
            one = AlignedBuf(BLOCK, 0xA1)
            three = [AlignedBuf(512, 0xB0 + i) for i in range(3)]
            many = [AlignedBuf(512, 0xC0 + i) for i in range(16)]  # own iovec array
            ctx.submit(True, fd, 0, [(one.addr, BLOCK)], BLOCK, res.callback(0))
            ctx.submit(True, fd, BLOCK, [(b.addr, 512) for b in three], 1536,
                       res.callback(1))
            ctx.submit(True, fd, 2 * BLOCK, [(b.addr, 512) for b in many], 8192,
                       res.callback(2))
            assert ctx.in_flight == 3 and ctx.submit_calls == 0
            assert sorted(await res.wait()) == [(0, BLOCK), (1, 1536), (2, 8192)]
            assert ctx.submit_calls == 1 and ctx.in_flight == 0
        finally:
            ctx.close()

    asyncio.run(main())
    data = image.read_bytes()
    assert data[:BLOCK] == b"\xa1" * BLOCK
    assert data[BLOCK:BLOCK + 1536] == b"\xb0" * 512 + b"\xb1" * 512 + b"\xb2" * 512
    assert data[2 * BLOCK:3 * BLOCK + BLOCK] == b"".join(bytes([0xC0 + i]) * 512
                                                         for i in range(16))


def test_plugged_batch_goes_out_when_the_plug_is_released(fd: int) -> None:
    """Under the PLUG the batch is sent at release (one io_submit), not a loop turn later."""
    async def main() -> None:
        ctx = AioContext(asyncio.get_running_loop(), depth=16)
        try:
            res = Results(3)
            bufs = [AlignedBuf(BLOCK) for _ in range(3)]
            with PLUG:
                with PLUG:  # nested: only the outermost release sends
                    for i, b in enumerate(bufs[:2]):
                        ctx.submit(False, fd, i * BLOCK, [(b.addr, BLOCK)], BLOCK,
                                   res.callback(i))
                assert ctx.submit_calls == 0
                ctx.submit(False, fd, 2 * BLOCK, [(bufs[2].addr, BLOCK)], BLOCK,
                           res.callback(2))
                assert ctx.submit_calls == 0
            assert ctx.submit_calls == 1
            assert sorted(await res.wait()) == [(i, BLOCK) for i in range(3)]
            assert ctx.submit_calls == 1
            assert all(b.data()[:256] == bytes(range(256)) for b in bufs)
        finally:
            ctx.close()

    asyncio.run(main())


def test_unbatched_submits_one_by_one(fd: int) -> None:
    async def main() -> None:
        ctx = AioContext(asyncio.get_running_loop(), depth=16, batch=False)
        try:
            res = Results(4)
            bufs = [AlignedBuf(BLOCK) for _ in range(4)]
            for i, b in enumerate(bufs):
                ctx.submit(False, fd, i * BLOCK, [(b.addr, BLOCK)], BLOCK,
                           res.callback(i))
            assert ctx.submit_calls == 4
            assert sorted(await res.wait()) == [(i, BLOCK) for i in range(4)]
            assert all(b.data() == bytes(range(256)) * 16 for b in bufs)
        finally:
            ctx.close()

    asyncio.run(main())


def test_more_requests_than_slots_wait_their_turn(fd: int) -> None:
    async def main() -> None:
        ctx = AioContext(asyncio.get_running_loop(), depth=2)
        try:
            res = Results(10)
            bufs = [AlignedBuf(BLOCK) for _ in range(10)]
            for i, b in enumerate(bufs):
                ctx.submit(False, fd, i * BLOCK, [(b.addr, BLOCK)], BLOCK,
                           res.callback(i))
            assert ctx.in_flight == 10
            assert sorted(await res.wait()) == [(i, BLOCK) for i in range(10)]
            assert ctx.in_flight == 0
        finally:
            ctx.close()

    asyncio.run(main())


def test_read_across_end_of_file_returns_what_there_was(fd: int) -> None:
    """The kernel's short read is resubmitted for the rest, which then reads nothing."""
    async def main() -> None:
        ctx = AioContext(asyncio.get_running_loop(), depth=4)
        try:
            res = Results(2)
            across, past = AlignedBuf(2 * BLOCK, 0xEE), AlignedBuf(BLOCK)
            ctx.submit(False, fd, 15 * BLOCK, [(across.addr, 2 * BLOCK)], 2 * BLOCK,
                       res.callback(0))
            ctx.submit(False, fd, 16 * BLOCK, [(past.addr, BLOCK)], BLOCK,
                       res.callback(1))
            assert sorted(await res.wait()) == [(0, BLOCK), (1, 0)]
            assert ctx.submit_calls == 2  # the batch, then the remainder of the first
            assert across.data()[:BLOCK] == bytes(range(256)) * 16
        finally:
            ctx.close()

    asyncio.run(main())


def test_refused_iocb_fails_alone(image: Path, fd: int) -> None:
    """A bad descriptor and a misaligned offset fail their own request, not the batch."""
    ro = os.open(image, os.O_RDONLY | os.O_DIRECT)

    async def main() -> None:
        ctx = AioContext(asyncio.get_running_loop(), depth=8)
        try:
            res = Results(4)
            bufs = [AlignedBuf(BLOCK, 1) for _ in range(4)]
            ctx.submit(False, fd, 0, [(bufs[0].addr, BLOCK)], BLOCK,
                       res.callback(0))
            ctx.submit(True, ro, 0, [(bufs[1].addr, BLOCK)], BLOCK,
                       res.callback(1))
            ctx.submit(False, fd, 100, [(bufs[2].addr, BLOCK)], BLOCK,
                       res.callback(2))
            ctx.submit(False, fd, BLOCK, [(bufs[3].addr, BLOCK)], BLOCK,
                       res.callback(3))
            assert sorted(await res.wait()) == [
                (0, BLOCK), (1, -errno.EBADF), (2, -errno.EINVAL), (3, BLOCK)]
        finally:
            ctx.close()

    try:
        asyncio.run(main())
    finally:
        os.close(ro)


def test_close_waits_for_in_flight_and_calls_back(fd: int) -> None:
    got: list[int] = []

    async def main() -> None:
        ctx = AioContext(asyncio.get_running_loop(), depth=4)
        bufs = [AlignedBuf(BLOCK) for _ in range(9)]
        for i, b in enumerate(bufs):
            ctx.submit(False, fd, i * BLOCK, [(b.addr, BLOCK)], BLOCK, got.append)
        ctx.close()
        assert got == [BLOCK] * 9
        assert ctx.in_flight == 0

    asyncio.run(main())


def test_a_failing_callback_is_logged_and_the_rest_complete(
    fd: int, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> None:
        ctx = AioContext(asyncio.get_running_loop(), depth=4, name="t")
        try:
            res = Results(2)

            def boom(_res: int) -> None:
                raise RuntimeError("boom")

            bufs = [AlignedBuf(BLOCK) for _ in range(3)]
            ctx.submit(False, fd, 0, [(bufs[0].addr, BLOCK)], BLOCK,
                       res.callback(0))
            ctx.submit(False, fd, 0, [(bufs[1].addr, BLOCK)], BLOCK, boom)
            ctx.submit(False, fd, 0, [(bufs[2].addr, BLOCK)], BLOCK,
                       res.callback(2))
            assert sorted(await res.wait()) == [(0, BLOCK), (2, BLOCK)]
        finally:
            ctx.close()

    with caplog.at_level(logging.ERROR):
        asyncio.run(main())
    assert [r.getMessage() for r in caplog.records] == ["t: completion callback failed"]


def test_an_iovec_array_goes_to_the_kernel_as_it_lies_in_memory(fd: int) -> None:
    """An IovArray's ``addr`` is what the iocb points at: the list is not packed again.

    The list half is made to disagree with the array on purpose (it names other
    buffers): the data read must land where the array says, which is only so if the
    kernel was given the array itself.
    """
    async def main() -> None:
        ctx = AioContext(asyncio.get_running_loop(), depth=4)
        try:
            res = Results(1)
            bufs = [AlignedBuf(512) for _ in range(16)]
            decoys = [AlignedBuf(512) for _ in range(16)]
            raw = struct.pack("<32Q", *[x for b in bufs for x in (b.addr, 512)])
            array = ctypes.create_string_buffer(raw, len(raw))
            iovecs = IovArray([(d.addr, 512) for d in decoys], ctypes.addressof(array), raw)
            ctx.submit(False, fd, 0, iovecs, 8192, res.callback(0))
            assert await res.wait() == [(0, 8192)]
            assert b"".join(b.data() for b in bufs) == (bytes(range(256)) * 32)
            assert all(d.data() == bytes(512) for d in decoys)
        finally:
            ctx.close()

    asyncio.run(main())


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="the ring is read on x86_64 only")
def test_completions_come_from_the_ring_without_io_getevents(
        fd: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """On x86_64 the reap reads the kernel's completion ring: over many wraps of it
    every request is called back once, with its own result, and io_getevents is
    never called (close, which waits, is the only caller)."""
    calls: list[int] = []
    real = linux_aio._syscall

    def counting(nr: int, *args: int) -> int:
        calls.append(nr)
        return int(real(nr, *args))

    monkeypatch.setattr(linux_aio, "_syscall", counting)
    getevents = linux_aio._numbers()["io_getevents"]

    async def main() -> None:
        ctx = AioContext(asyncio.get_running_loop(), depth=4)
        try:
            assert ctx._ring_size
            n = 64 * ctx._ring_size // 4 + 3  # wraps the ring many times
            res = Results(n)
            buf = AlignedBuf(BLOCK)
            for i in range(n):
                ctx.submit(False, fd, (i % 16) * BLOCK, [(buf.addr, 512 * (1 + i % 8))],
                           512 * (1 + i % 8), res.callback(i))
            got = await res.wait()
            assert sorted(got) == [(i, 512 * (1 + i % 8)) for i in range(n)]
            assert getevents not in calls
        finally:
            ctx.close()

    asyncio.run(main())
