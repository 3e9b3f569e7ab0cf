"""flakey: argument checks in the kernel's words, status round trips, and what each
feature does to reads and writes during a down interval (the clock is the test's)."""

from __future__ import annotations

import asyncio
import ctypes
import logging

import pytest
from fake_context import ManualClock

import backend.targets  # noqa: F401  (registers the targets)
from backend.blockio import SECTOR_SIZE, Bio, BlockDevice, Op, Status, iov_to_bytes
from backend.devices.mem import MemDevice
from backend.dm import MappedDevice, StatusType, parse_table
from backend.errors import DeviceError, TableError
from backend.targets.flakey import FlakeyTarget


class Io:
    """One request and the statuses it completed with."""

    def __init__(self, op: Op, sector: int, count: int, fill: bytes = b"\0") -> None:
        size = count * SECTOR_SIZE if op.has_data else 0
        self.buf = ctypes.create_string_buffer(fill * size if size else b"", max(size, 1))
        iovecs = [(ctypes.addressof(self.buf), size)] if size else []
        self.statuses: list[Status] = []
        self.bio = Bio(op, sector, count, iovecs, self.statuses.append)

    @property
    def status(self) -> Status:
        assert len(self.statuses) == 1, self.statuses
        return self.statuses[0]

    def data(self) -> bytes:
        return iov_to_bytes(self.bio.iovecs)


DISK = MemDevice("disk", 64 * SECTOR_SIZE)


def resolve(name: str) -> BlockDevice:
    if name != "disk":
        raise DeviceError(f"no device {name!r}")
    return DISK


def make(args: str, clock: ManualClock) -> tuple[MappedDevice, FlakeyTarget]:
    md = MappedDevice("fl")
    md.create(parse_table(f"0 64 flakey {args}", resolve, clock=clock))
    assert md.live_table is not None
    target = md.live_table.targets[0]
    assert isinstance(target, FlakeyTarget)
    assert target.start_time == 0.0  # the constructor read the table's clock
    return md, target


def io(md: MappedDevice, op: Op, sector: int = 0, count: int = 1, fill: bytes = b"\0") -> Io:
    req = Io(op, sector, count, fill)
    md.submit_bio(req.bio)
    return req


@pytest.mark.parametrize(("args", "reason"), [
    ("disk 0 1", "Invalid argument count"),
    ("disk x 1 1", "invalid <offset>"),
    ("disk 0 0 0", "Total (up + down) interval is zero"),
    ("disk 0 1 1 8 a b c d e f g h", "Invalid number of feature args"),
    ("disk 0 1 1 2 drop_writes", "announced"),
    ("disk 0 1 1 2 drop_writes drop_writes", "Feature drop_writes duplicated"),
    ("disk 0 1 1 2 drop_writes error_writes",
     "Feature error_writes conflicts with feature drop_writes"),
    ("disk 0 1 1 1 explode", "Unrecognised flakey feature requested"),
    ("disk 0 1 1 3 corrupt_bio_byte 1 r", "Feature corrupt_bio_byte requires 4 parameters"),
    ("disk 0 1 1 5 corrupt_bio_byte 0 r 1 0", "Invalid corrupt bio byte"),
    ("disk 0 1 1 5 corrupt_bio_byte 1 x 1 0", "Invalid corrupt bio direction (r or w)"),
    ("disk 0 1 1 5 corrupt_bio_byte 1 r 256 0", "(0-255)"),
    ("disk 0 1 1 6 error_reads corrupt_bio_byte 1 r 7 0",
     "error_reads is incompatible with corrupt_bio_byte with the READ flag set"),
    ("disk 0 1 1 6 drop_writes corrupt_bio_byte 1 w 7 0",
     "drop_writes is incompatible with corrupt_bio_byte with the WRITE flag set"),
    ("disk 0 1 1 1 drop_writes extra", "too many arguments"),
    ("nodisk 0 1 1", "device lookup failed: nodisk"),
    ("disk 1 1 1", "too small"),
])
def test_bad_arguments_name_the_problem(args: str, reason: str) -> None:
    with pytest.raises(TableError) as exc:
        parse_table(f"0 64 flakey {args}", resolve)
    assert exc.value.line == 1
    assert reason in exc.value.reason


@pytest.mark.parametrize(("args", "table"), [
    ("disk 0 5 1", "disk 0 5 1 0"),  # as the kernel prints it (the format oracle)
    ("disk 0 5 1 0", "disk 0 5 1 0"),
    ("disk 0 5 1 1 drop_writes", "disk 0 5 1 1 drop_writes"),
    ("disk 0 5 1 2 error_writes error_reads", "disk 0 5 1 2 error_reads error_writes"),
    ("disk 0 5 1 6 drop_writes corrupt_bio_byte 32 r 1 0",
     "disk 0 5 1 6 drop_writes corrupt_bio_byte 32 r 1 0"),
])
def test_status_table_round_trips(args: str, table: str) -> None:
    first = parse_table(f"0 64 flakey {args}", resolve)
    assert first.status(StatusType.TABLE) == f"0 64 flakey {table}"
    again = parse_table(first.status(StatusType.TABLE), resolve)
    assert again.status(StatusType.TABLE) == first.status(StatusType.TABLE)
    assert first.status(StatusType.INFO) == "0 64 flakey"


def test_up_interval_passes_io_down_interval_fails_it() -> None:
    clock = ManualClock(0.0)
    md, _ = make("disk 0 2 1", clock)
    assert io(md, Op.WRITE, 3, 1, b"u").status is Status.OK
    clock.time = 1.9
    assert io(md, Op.READ, 3).data() == b"u" * SECTOR_SIZE
    clock.time = 2.0  # seconds 2..3 of each 3-second cycle are down
    assert io(md, Op.READ, 3).status is Status.EIO
    assert io(md, Op.WRITE, 3, 1, b"d").status is Status.EIO
    clock.time = 3.0  # up again
    assert io(md, Op.READ, 3).data() == b"u" * SECTOR_SIZE
    clock.time = 5.5  # down in the second cycle
    assert io(md, Op.WRITE, 3, 1, b"d").status is Status.EIO
    stats = md.stats()  # evidence: three faults over two down intervals, three EIOs
    assert (stats["targets"], stats["eio"], stats["ios"]) == ([{"faults": 3}], 3, 6)


def test_drop_writes_completes_writes_without_doing_them() -> None:
    clock = ManualClock(0.0)
    md, _ = make("disk 0 1 1 1 drop_writes", clock)
    assert io(md, Op.WRITE, 8, 1, b"a").status is Status.OK
    clock.time = 1.0
    assert io(md, Op.WRITE, 8, 1, b"b").status is Status.OK  # dropped
    assert io(md, Op.READ, 8).data() == b"a" * SECTOR_SIZE  # reads still work
    assert DISK.read(8 * SECTOR_SIZE, 1) == b"a"


def test_error_reads_only_fails_reads() -> None:
    clock = ManualClock(0.0)
    md, _ = make("disk 0 1 1 1 error_reads", clock)
    clock.time = 1.0
    assert io(md, Op.READ, 9).status is Status.EIO
    assert io(md, Op.WRITE, 9, 1, b"w").status is Status.OK
    assert DISK.read(9 * SECTOR_SIZE, 1) == b"w"


def test_error_writes_fails_writes_and_flushes_but_not_reads() -> None:
    clock = ManualClock(0.0)
    md, _ = make("disk 0 1 1 1 error_writes", clock)
    clock.time = 1.0
    assert io(md, Op.WRITE, 9, 1, b"w").status is Status.EIO
    assert io(md, Op.FLUSH).status is Status.EIO
    assert io(md, Op.READ, 9).status is Status.OK


def test_corrupt_bio_byte_on_reads_while_down() -> None:
    clock = ManualClock(0.0)
    md, _ = make("disk 0 1 1 5 corrupt_bio_byte 3 r 88 0", clock)
    assert io(md, Op.WRITE, 10, 1, b"c").status is Status.OK
    assert io(md, Op.READ, 10).data() == b"c" * SECTOR_SIZE  # up: intact
    clock.time = 1.0
    got = io(md, Op.READ, 10).data()
    assert got == b"cc" + b"X" + b"c" * (SECTOR_SIZE - 3)
    assert DISK.read(10 * SECTOR_SIZE, SECTOR_SIZE) == b"c" * SECTOR_SIZE  # the disk is fine


def test_corrupt_bio_byte_on_writes_leaves_the_callers_buffer_alone() -> None:
    clock = ManualClock(0.0)
    md, _ = make("disk 0 1 1 5 corrupt_bio_byte 1 w 0 1", clock)
    clock.time = 1.0
    req = io(md, Op.WRITE, 11, 1, b"z")
    assert req.status is Status.OK
    assert req.data() == b"z" * SECTOR_SIZE
    assert DISK.read(11 * SECTOR_SIZE, 2) == b"\0z"


def test_corrupt_flags_mask_must_match() -> None:
    clock = ManualClock(0.0)
    md, _ = make(f"disk 0 1 1 5 corrupt_bio_byte 1 w 0 {1 << 17}", clock)  # REQ_FUA only
    clock.time = 1.0
    assert io(md, Op.WRITE, 12, 1, b"q").status is Status.OK
    assert DISK.read(12 * SECTOR_SIZE, 1) == b"q"


def test_each_transition_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    clock = ManualClock(0.0)
    md, _ = make("disk 0 1 1 1 error_writes", clock)
    caplog.set_level(logging.INFO, logger="backend.targets.flakey")
    clock.time = 1.0
    for _ in range(3):
        io(md, Op.WRITE, 0, 1)
    clock.time = 2.0
    io(md, Op.WRITE, 0, 1)
    messages = [(r.name, r.getMessage()) for r in caplog.records]
    assert messages == [("backend.targets.flakey.fl", "flakey disk down for 1s: error_writes"),
                        ("backend.targets.flakey.fl",
                         "flakey disk up again after 3 injected faults")]


def test_suspend_and_resume_pass_through() -> None:
    async def scenario() -> None:
        md, _ = make("disk 0 1 1", ManualClock(0.0))
        await md.suspend(noflush=True)
        await md.resume()
        assert io(md, Op.WRITE, 1, 1, b"r").status is Status.OK

    asyncio.run(asyncio.wait_for(scenario(), 10))
