"""linear, striped, error and zero: mapping, status round trips, flushes, discards."""

from __future__ import annotations

import asyncio
import ctypes

import pytest
from dm.support import loop_turn

import backend.targets  # noqa: F401
from backend.blockio import SECTOR_SIZE, Bio, BlockDevice, Op, Status, iov_to_bytes
from backend.devices.mem import MemDevice, NullDevice
from backend.dm import MappedDevice, StatusType, parse_table
from backend.errors import DeviceError


class Devs:
    def __init__(self, **sizes: int) -> None:
        self.devs: dict[str, BlockDevice] = {
            n: MemDevice(n, s * SECTOR_SIZE) for n, s in sizes.items()}

    def __call__(self, name: str) -> BlockDevice:
        if name not in self.devs:
            raise DeviceError(f"no device {name}")
        return self.devs[name]

    def mem(self, name: str) -> MemDevice:
        dev = self.devs[name]
        assert isinstance(dev, MemDevice)
        return dev


def io(md: MappedDevice, op: Op, sector: int, n: int, data: bytes = b"") -> tuple[Status, bytes]:
    size = n * SECTOR_SIZE if op.has_data else 0
    buf = ctypes.create_string_buffer(data.ljust(size, b"\0")[:size] if size else b"", max(size, 1))
    out: list[Status] = []
    iovecs = [(ctypes.addressof(buf), size)] if size else []
    md.submit_bio(Bio(op, sector, n, iovecs, out.append))
    assert len(out) == 1
    return out[0], iov_to_bytes(iovecs)


def device(text: str, devs: Devs) -> MappedDevice:
    md = MappedDevice("t")
    md.create(parse_table(text, devs))
    return md


@pytest.mark.parametrize(
    "text",
    [
        "0 100 linear a 7",
        "0 64 striped 2 8 a 0 b 16",
        "0 48 striped 3 16 a 1 b 2 c 3",
        "0 10 error",
        "0 10 zero",
    ],
)
def test_status_table_round_trip(text: str) -> None:
    devs = Devs(a=200, b=200, c=200)
    t = parse_table(text, devs)
    assert t.status(StatusType.TABLE) == text
    assert parse_table(t.status(StatusType.TABLE), devs).status(StatusType.TABLE) == text


def test_linear_maps_with_offset() -> None:
    devs = Devs(a=200)
    md = device("0 100 linear a 50", devs)
    data = bytes(range(256)) * 4
    assert io(md, Op.WRITE, 3, 2, data)[0] is Status.OK
    assert devs.mem("a").read(53 * SECTOR_SIZE, 1024) == data
    assert io(md, Op.READ, 3, 2) == (Status.OK, data)
    assert md.status(StatusType.INFO) == "0 100 linear"


def test_striped_places_chunks_round_robin() -> None:
    devs = Devs(a=100, b=100)
    md = device("0 64 striped 2 8 a 0 b 10", devs)
    data = b"".join(bytes([i]) * SECTOR_SIZE for i in range(64))
    assert io(md, Op.WRITE, 0, 64, data)[0] is Status.OK
    a, b = devs.mem("a"), devs.mem("b")
    # chunk 0 -> a[0..8], chunk 1 -> b[10..18], chunk 2 -> a[8..16], chunk 3 -> b[18..26]
    assert a.read(0, 8 * SECTOR_SIZE) == data[: 8 * SECTOR_SIZE]
    assert b.read(10 * SECTOR_SIZE, 8 * SECTOR_SIZE) == data[8 * SECTOR_SIZE: 16 * SECTOR_SIZE]
    assert a.read(8 * SECTOR_SIZE, 8 * SECTOR_SIZE) == data[16 * SECTOR_SIZE: 24 * SECTOR_SIZE]
    assert b.read(18 * SECTOR_SIZE, 8 * SECTOR_SIZE) == data[24 * SECTOR_SIZE: 32 * SECTOR_SIZE]
    assert io(md, Op.READ, 5, 20)[1] == data[5 * SECTOR_SIZE: 25 * SECTOR_SIZE]
    assert md.status(StatusType.INFO) == "0 64 striped 2 a b 1 AA"


def test_striped_flush_goes_to_every_stripe() -> None:
    devs = Devs(a=100, b=100, c=100)
    md = device("0 48 striped 3 8 a 0 b 0 c 0", devs)
    assert io(md, Op.FLUSH, 0, 0)[0] is Status.OK
    assert [devs.mem(n).ops[Op.FLUSH] for n in "abc"] == [1, 1, 1]


def test_striped_error_marks_stripe_and_raises_event() -> None:
    class Failing(NullDevice):
        def _transfer(self, op: Op, offset: int, length: int, iovecs: list[tuple[int, int]]
                      ) -> Status:
            return Status.EIO

    devs = Devs(a=100)
    devs.devs["bad"] = Failing("bad", 100 * SECTOR_SIZE)
    md = device("0 32 striped 2 8 a 0 bad 0", devs)
    assert io(md, Op.READ, 8, 1)[0] is Status.EIO
    assert md.status(StatusType.INFO) == "0 32 striped 2 a bad 1 AD"
    assert md.event_nr == 1


def test_error_target_fails_everything_but_flush() -> None:
    md = device("0 10 error", Devs())
    for op, n in ((Op.READ, 1), (Op.WRITE, 1), (Op.DISCARD, 2), (Op.WRITE_ZEROES, 2)):
        assert io(md, op, 0, n)[0] is Status.EIO
    assert io(md, Op.FLUSH, 0, 0)[0] is Status.OK  # num_flush_bios = 0, as in the kernel


def test_zero_target_reads_zeroes_and_drops_writes() -> None:
    md = device("0 10 zero", Devs())
    assert io(md, Op.WRITE, 0, 1, b"x" * 512)[0] is Status.OK
    assert io(md, Op.READ, 0, 2) == (Status.OK, bytes(1024))
    assert io(md, Op.DISCARD, 0, 2)[0] is Status.OK


def test_mem_device_loop_completion_and_null_device() -> None:
    async def scenario() -> None:
        mem = MemDevice("m", 4096, complete_on_loop=True)
        done: list[Status] = []
        buf = ctypes.create_string_buffer(b"q" * 512, 512)
        mem.submit(Op.WRITE, 512, 512, [(ctypes.addressof(buf), 512)], done.append)
        assert done == []
        await loop_turn()
        assert done == [Status.OK] and mem.read(512, 512) == b"q" * 512
        mem.submit(Op.WRITE, 4000, 512, [(ctypes.addressof(buf), 512)], done.append)
        await loop_turn()
        assert done[-1] is Status.EIO

    asyncio.run(scenario())
    null = NullDevice("n", 4096)
    buf = ctypes.create_string_buffer(b"z" * 512, 512)
    got: list[Status] = []
    null.submit(Op.WRITE, 0, 512, [(ctypes.addressof(buf), 512)], got.append)
    null.submit(Op.READ, 0, 512, [(ctypes.addressof(buf), 512)], got.append)
    assert got == [Status.OK, Status.OK] and buf.raw == bytes(512)
    ro = MemDevice("ro", 4096, read_only=True)
    ro.submit(Op.WRITE, 0, 512, [(ctypes.addressof(buf), 512)], got.append)
    assert got[-1] is Status.EROFS
