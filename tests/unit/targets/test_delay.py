"""delay: argument checks, status round trips, per-class devices and delays, ordering,
and presuspend issuing everything at once. Time is a manual clock except in one test
that checks the default (the running loop's timers)."""

from __future__ import annotations

import asyncio
import ctypes
import logging

import pytest
from fake_context import ManualClock

from backend.blockio import SECTOR_SIZE, Bio, BlockDevice, Op, Status, iov_to_bytes
from backend.devices.mem import MemDevice
from backend.dm import MappedDevice, StatusType, parse_table
from backend.errors import DeviceError, TableError
from backend.targets.delay import DelayTarget


class Devices:
    def __init__(self) -> None:
        self.devs = {n: MemDevice(n, 64 * SECTOR_SIZE) for n in ("r", "w", "f")}

    def __call__(self, name: str) -> BlockDevice:
        if name not in self.devs:
            raise DeviceError(f"no device {name!r}")
        return self.devs[name]


class Io:
    def __init__(self, md: MappedDevice, op: Op, sector: int = 0, fill: bytes = b"\0",
                 order: list[str] | None = None, name: str = "") -> None:
        size = SECTOR_SIZE if op.has_data else 0
        self.buf = ctypes.create_string_buffer(fill * size, max(size, 1))
        self.statuses: list[Status] = []

        def end(status: Status) -> None:
            self.statuses.append(status)
            if order is not None:
                order.append(name)

        count = 1 if op.has_data else 0
        self.bio = Bio(op, sector, count, [(ctypes.addressof(self.buf), size)] if size else [],
                       end)
        md.submit_bio(self.bio)

    @property
    def status(self) -> Status | None:
        assert len(self.statuses) <= 1
        return self.statuses[0] if self.statuses else None

    def data(self) -> bytes:
        return iov_to_bytes(self.bio.iovecs)


def make(args: str, devs: Devices | None = None) -> tuple[MappedDevice, DelayTarget, ManualClock]:
    clock = ManualClock()
    md = MappedDevice("dl")
    md.create(parse_table(f"0 64 delay {args}", devs or Devices(), clock=clock))
    assert md.live_table is not None
    target = md.live_table.targets[0]
    assert isinstance(target, DelayTarget)
    return md, target, clock


@pytest.mark.parametrize(("args", "reason"), [
    ("r 0", "Requires exactly 3, 6 or 9 arguments"),
    ("r 0 1 w 0", "Requires exactly 3, 6 or 9 arguments"),
    ("r x 1", "Invalid device sector"),
    ("r 0 -1", "Invalid delay"),
    ("r 0 1 w 0 soon", "Invalid delay"),
    ("r 0 1 nodev 0 1", "device lookup failed: nodev"),
    ("r 1 1", "too small"),
])
def test_bad_arguments_name_the_problem(args: str, reason: str) -> None:
    with pytest.raises(TableError) as exc:
        parse_table(f"0 64 delay {args}", Devices())
    assert exc.value.line == 1
    assert reason in exc.value.reason


@pytest.mark.parametrize("args", ["r 0 50", "r 0 50 w 0 100", "r 0 50 w 0 100 f 0 0"])
def test_status_table_round_trips(args: str) -> None:
    devs = Devices()
    first = parse_table(f"0 64 delay {args}", devs)
    assert first.status(StatusType.TABLE) == f"0 64 delay {args}"
    assert parse_table(first.status(StatusType.TABLE), devs).status(StatusType.TABLE) == \
        f"0 64 delay {args}"
    assert first.status(StatusType.INFO) == "0 64 delay 0 0 0"


def test_reads_wait_for_their_delay() -> None:
    devs = Devices()
    devs.devs["r"].write(5 * SECTOR_SIZE, b"R" * SECTOR_SIZE)
    md, _, clock = make("r 0 50", devs)
    read = Io(md, Op.READ, 5)
    assert read.status is None
    assert md.status() == "0 64 delay 1 0 0"
    clock.advance(0.049)
    assert read.status is None
    clock.advance(0.001)
    assert read.status is Status.OK
    assert read.data() == b"R" * SECTOR_SIZE
    assert md.status() == "0 64 delay 0 0 0"
    assert md.stats()["targets"] == [
        {"delayed": 1, "delayed-by-class": {"read": 1, "write": 0, "flush": 0},
         "issued-early": 0}]


def test_each_class_has_its_device_and_delay() -> None:
    devs = Devices()
    md, _, clock = make("r 0 10 w 0 20 f 0 30", devs)
    write = Io(md, Op.WRITE, 3, b"W")
    flush = Io(md, Op.FLUSH)
    read = Io(md, Op.READ, 3)
    assert md.status() == "0 64 delay 1 1 1"
    assert clock.armed == [pytest.approx(0.010)]  # one timer, at the earliest expiry
    clock.advance(0.010)
    assert (read.status, write.status, flush.status) == (Status.OK, None, None)
    assert read.data() == b"\0" * SECTOR_SIZE  # the read device, not the written one
    clock.advance(0.010)
    assert write.status is Status.OK and flush.status is None
    assert devs.devs["w"].read(3 * SECTOR_SIZE, 1) == b"W"
    clock.advance(0.010)
    assert flush.status is Status.OK
    assert devs.devs["f"].ops[Op.FLUSH] == 1


def test_flushes_follow_the_write_class_without_a_third_triple() -> None:
    devs = Devices()
    md, _, clock = make("r 0 0 w 0 20", devs)
    read = Io(md, Op.READ, 1)
    assert read.status is Status.OK  # delay 0: straight through
    flush = Io(md, Op.FLUSH)
    assert flush.status is None
    clock.advance(0.020)
    assert flush.status is Status.OK
    assert devs.devs["w"].ops[Op.FLUSH] == 1


def test_delayed_io_completes_in_submission_order() -> None:
    md, _, clock = make("r 0 10")
    order: list[str] = []
    Io(md, Op.WRITE, 1, b"a", order, "first")
    clock.advance(0.005)
    Io(md, Op.WRITE, 1, b"b", order, "second")
    Io(md, Op.READ, 1, order=order, name="third")
    clock.advance(0.005)
    assert order == ["first"]
    clock.advance(0.005)
    assert order == ["first", "second", "third"]


def test_presuspend_issues_everything_at_once(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        md, _, clock = make("r 0 5000")
        caplog.set_level(logging.INFO, logger="backend.targets.delay")
        ios = [Io(md, Op.WRITE, n, b"s") for n in range(3)]
        await asyncio.wait_for(md.suspend(), 5)  # no time passes on the manual clock
        assert [io.status for io in ios] == [Status.OK] * 3
        assert clock.armed == []
        assert ("backend.targets.delay.dl", logging.INFO,
                "presuspend issued 3 delayed I/Os early") in caplog.record_tuples
        assert md.stats()["targets"][0]["issued-early"] == 3
        await md.resume()
        later = Io(md, Op.READ, 0)
        assert later.status is None  # delaying again after resume
        clock.advance(5)
        assert later.status is Status.OK

    asyncio.run(scenario())


def test_noflush_suspend_does_not_wait_for_the_delay_either() -> None:
    async def scenario() -> None:
        md, _, _ = make("r 0 5000")
        io = Io(md, Op.READ, 0)
        await asyncio.wait_for(md.suspend(noflush=True), 5)
        assert io.status is Status.OK

    asyncio.run(scenario())


def test_default_clock_is_the_running_loop() -> None:
    async def scenario() -> None:
        md = MappedDevice("dl")
        md.create(parse_table("0 64 delay r 0 20", Devices()))
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Status] = loop.create_future()
        buf = ctypes.create_string_buffer(SECTOR_SIZE)
        start = loop.time()
        md.submit_bio(Bio(Op.READ, 0, 1, [(ctypes.addressof(buf), SECTOR_SIZE)],
                          done.set_result))
        assert await asyncio.wait_for(done, 5) is Status.OK
        assert loop.time() - start >= 0.019

    asyncio.run(scenario())
