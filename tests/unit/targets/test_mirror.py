"""mirror: argument checks, status formats, initial resync, reads and writes across legs,
read failover and leg failure (with and without handle_errors).

Devices are in memory; a FaultyDevice fails chosen operations or holds them. The loop is
driven (``until``), never slept on.
"""

from __future__ import annotations

import asyncio
import ctypes
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import pytest
from dm.support import loop_turn
from fake_context import ManualClock

from backend.blockio import (
    SECTOR_SIZE,
    Bio,
    BlockDevice,
    Completion,
    IoVec,
    Op,
    Status,
    iov_to_bytes,
)
from backend.devices.mem import MemDevice
from backend.dm import MappedDevice, StatusType, parse_table
from backend.errors import DeviceError, TableError
from backend.targets.mirror import MirrorTarget

SECTORS = 80  # 10 regions of 8 sectors
FROZEN = ManualClock()
"""The mirrors' clock: time stands still, so the worker never rests between passes
(WORKER_SLICE) on a wall clock that ``until``'s loop turns do not move; on a loaded
machine a pass took over the slice and the worker slept past the turns a test gave it."""


class FaultyDevice:
    """A MemDevice that can fail chosen ops (EIO) or hold every request until released."""

    def __init__(self, name: str, sectors: int) -> None:
        self.mem = MemDevice(name, sectors * SECTOR_SIZE)
        self.fail: set[Op] = set()
        self.hold = False
        self.held: list[Callable[[], None]] = []

    @property
    def name(self) -> str:
        return self.mem.name

    @property
    def size(self) -> int:
        return self.mem.size

    @property
    def read_only(self) -> bool:
        return False

    def submit(self, op: Op, offset: int, length: int, iovecs: Sequence[IoVec],
               done: Completion) -> None:
        def run() -> None:
            if op in self.fail:
                done(Status.EIO)
            else:
                self.mem.submit(op, offset, length, iovecs, done)

        if self.hold:
            self.held.append(run)
        else:
            run()

    def release(self) -> None:
        self.hold = False
        held, self.held = self.held, []
        for run in held:
            run()

    def read(self, sector: int, count: int = 1) -> bytes:
        return self.mem.read(sector * SECTOR_SIZE, count * SECTOR_SIZE)

    def write(self, sector: int, data: bytes) -> None:
        self.mem.write(sector * SECTOR_SIZE, data)


class Devices:
    def __init__(self, *names: str, sectors: int = SECTORS) -> None:
        self.devs = {name: FaultyDevice(name, sectors) for name in names}

    def __call__(self, name: str) -> BlockDevice:
        if name not in self.devs:
            raise DeviceError(f"no device {name!r}")
        return self.devs[name]

    def __getitem__(self, name: str) -> FaultyDevice:
        return self.devs[name]


class Io:
    """One request on a mapped device and the statuses it completed with."""

    def __init__(self, md: MappedDevice, op: Op, sector: int = 0, count: int = 1,
                 fill: bytes = b"\0") -> None:
        size = count * SECTOR_SIZE if op.has_data else 0
        self.buf = ctypes.create_string_buffer(fill * size, max(size, 1))
        self.statuses: list[Status] = []
        count = count if op.has_data else 0
        iovecs = [(ctypes.addressof(self.buf), size)] if size else []
        md.submit_bio(Bio(op, sector, count, iovecs, self.statuses.append))
        self.iovecs = iovecs

    @property
    def done(self) -> bool:
        return bool(self.statuses)

    @property
    def status(self) -> Status | None:
        assert len(self.statuses) <= 1, self.statuses
        return self.statuses[0] if self.statuses else None

    def data(self) -> bytes:
        return iov_to_bytes(self.iovecs)


async def until(condition: Callable[[], bool], rounds: int = 2000) -> None:
    """Drive the loop (no time passes) until ``condition`` holds."""
    for _ in range(rounds):
        if condition():
            return
        await loop_turn()
    raise AssertionError("condition not reached while driving the loop")


def run(test: Callable[[], Coroutine[Any, Any, None]]) -> Callable[[], None]:
    def wrapper() -> None:
        asyncio.run(asyncio.wait_for(test(), 10))

    wrapper.__name__ = test.__name__
    wrapper.__doc__ = test.__doc__
    return wrapper


def mirror(md: MappedDevice) -> MirrorTarget:
    assert md.live_table is not None
    target = md.live_table.targets[0]
    assert isinstance(target, MirrorTarget)
    return target


def create(devs: Devices, args: str, name: str = "mir") -> MappedDevice:
    md = MappedDevice(name)
    md.create(parse_table(f"0 {SECTORS} mirror {args}", devs, clock=FROZEN))
    return md


async def synced(devs: Devices, args: str = "core 1 8 2 a 0 b 0 1 handle_errors"
                 ) -> MappedDevice:
    md = create(devs, args)
    target = mirror(md)
    await until(lambda: target.in_sync)
    return md


# --- construction ---------------------------------------------------------------------


@pytest.mark.parametrize(("args", "reason"), [
    ("core", "Insufficient mirror log arguments"),
    ("core x 8", "Invalid mirror log argument count"),
    ("core 2 8", "Insufficient mirror log arguments"),
    ("weird 1 8 2 a 0 b 0", "Error creating mirror dirty log: unknown dirty log type 'weird'"),
    ("core 0 2 a 0 b 0", "wrong number of arguments to dirty region log"),
    ("core 1 6 2 a 0 b 0", "invalid region size 6"),
    ("core 1 1 2 a 0 b 0", "invalid region size 1"),
    ("core 1 128 2 a 0 b 0", "invalid region size 128"),
    ("core 2 8 often 2 a 0 b 0", "unrecognised sync argument to dirty region log: often"),
    ("disk 1 8 2 a 0 b 0", "wrong number of arguments to disk dirty region log"),
    ("disk 2 nolog 8 2 a 0 b 0", "device lookup failed: nolog"),
    ("core 1 8", "Invalid number of mirrors"),
    ("core 1 8 1 a 0", "Invalid number of mirrors"),
    ("core 1 8 10 a 0 b 0", "Invalid number of mirrors"),
    ("core 1 8 2 a 0", "Too few mirror arguments"),
    ("core 1 8 2 a 0 b x", "Invalid offset"),
    ("core 1 8 2 a 0 c 0", "device lookup failed: c"),
    ("core 1 8 2 a 0 b 1", "too small"),
    ("core 1 8 2 a 0 b 0 x", "Invalid number of features"),
    ("core 1 8 2 a 0 b 0 2 handle_errors", "Not enough arguments to support feature count"),
    ("core 1 8 2 a 0 b 0 1 keep_log", "keep_log feature requires the handle_errors feature"),
    ("core 1 8 2 a 0 b 0 1 bogus", "Unrecognised feature requested"),
    ("core 1 8 2 a 0 b 0 1 handle_errors x", "Too many mirror arguments"),
])
def test_bad_arguments_name_the_problem(args: str, reason: str) -> None:
    devs = Devices("a", "b")
    devs.devs["log"] = FaultyDevice("log", 1)
    with pytest.raises(TableError) as exc:
        parse_table(f"0 {SECTORS} mirror {args}", devs)
    assert exc.value.line == 1
    assert reason in exc.value.reason


def test_disk_log_device_must_hold_header_and_bits() -> None:
    devs = Devices("a", "b")
    devs.devs["tiny"] = FaultyDevice("tiny", 2)
    with pytest.raises(TableError, match="log device tiny too small: need 1536 bytes"):
        parse_table(f"0 {SECTORS} mirror disk 2 tiny 8 2 a 0 b 0", devs)


@pytest.mark.parametrize("args", [
    "core 1 8 2 a 0 b 0",
    "core 2 8 nosync 2 a 0 b 0",
    "core 2 8 sync 3 a 0 b 0 c 0 1 handle_errors",
    "disk 2 log 8 2 a 0 b 0",
    "disk 3 log 16 nosync 2 a 0 b 0 1 handle_errors",
])
def test_status_table_round_trips(args: str) -> None:
    devs = Devices("a", "b", "c", "log")
    table = parse_table(f"0 {SECTORS} mirror {args}", devs)
    assert table.status(StatusType.TABLE) == f"0 {SECTORS} mirror {args}"
    again = parse_table(table.status(StatusType.TABLE), devs)
    assert again.status(StatusType.TABLE) == table.status(StatusType.TABLE)
    table.destroy()
    again.destroy()


@run
async def test_status_info_like_the_kernels() -> None:
    devs = Devices("a", "b", "log")
    md = create(devs, "core 2 8 nosync 2 a 0 b 0")
    assert md.status() == f"0 {SECTORS} mirror 2 a b 10/10 1 AA 1 core"
    disk = MappedDevice("d")
    disk.create(parse_table(f"0 {SECTORS} mirror disk 3 log 8 nosync 2 a 0 b 0", devs,
                            clock=FROZEN))
    await until(lambda: mirror(disk).in_sync)
    assert disk.status() == f"0 {SECTORS} mirror 2 a b 10/10 1 AA 3 disk log A"


# --- resync ---------------------------------------------------------------------------


@run
async def test_initial_resync_copies_the_default_leg_to_the_others() -> None:
    devs = Devices("a", "b", "c")
    for sector in range(SECTORS):
        devs["a"].write(sector, bytes([sector]) * SECTOR_SIZE)
    md = create(devs, "core 1 8 3 a 0 b 0 c 0")
    assert md.status().startswith(f"0 {SECTORS} mirror 3 a b c 0/10 1 AAA")
    events = md.event_nr
    await until(lambda: mirror(md).in_sync)
    assert md.status() == f"0 {SECTORS} mirror 3 a b c 10/10 1 AAA 1 core"
    assert md.event_nr == events + 1  # "mirror in sync"
    for leg in ("b", "c"):
        assert devs[leg].read(0, SECTORS) == devs["a"].read(0, SECTORS)


@run
async def test_nosync_trusts_the_legs() -> None:
    devs = Devices("a", "b")
    devs["a"].write(0, b"x" * SECTOR_SIZE)
    md = create(devs, "core 2 8 nosync 2 a 0 b 0")
    await until(lambda: mirror(md).in_sync)
    assert devs["b"].read(0) == b"\0" * SECTOR_SIZE  # nothing copied
    assert devs["a"].mem.ops[Op.READ] == 0


@run
async def test_write_to_a_recovering_region_waits_for_its_copy() -> None:
    devs = Devices("a", "b")
    devs["a"].write(0, b"o" * SECTOR_SIZE * 8)
    devs["b"].hold = True  # the first region's copy cannot finish yet
    md = create(devs, "core 1 8 2 a 0 b 0")
    await until(lambda: bool(devs["b"].held))
    write = Io(md, Op.WRITE, 2, 1, b"n")
    await until(lambda: len(mirror(md).rh.regions[0].delayed) == 1)
    assert not write.done
    devs["b"].release()
    await until(lambda: write.done)
    assert write.status is Status.OK
    await until(lambda: mirror(md).in_sync)
    for leg in ("a", "b"):  # the write landed after the copy, on both legs
        assert devs[leg].read(2) == b"n" * SECTOR_SIZE
        assert devs[leg].read(1) == b"o" * SECTOR_SIZE


@run
async def test_reads_of_unsynced_regions_use_the_default_leg() -> None:
    devs = Devices("a", "b")
    devs["a"].write(20, b"d" * SECTOR_SIZE)
    devs["b"].hold = True
    md = create(devs, "core 1 8 2 a 0 b 0")
    read = Io(md, Op.READ, 20)
    await until(lambda: read.done)
    assert read.data() == b"d" * SECTOR_SIZE


@run
async def test_suspend_waits_for_recovery_in_flight_and_resume_restarts_it() -> None:
    devs = Devices("a", "b")
    devs["b"].hold = True
    md = create(devs, "core 1 8 2 a 0 b 0")
    await until(lambda: bool(devs["b"].held))
    suspend = asyncio.create_task(md.suspend())
    await until(lambda: mirror(md).rh.recovery_stopped)
    for _ in range(50):
        await loop_turn()
    assert not suspend.done()
    devs["b"].release()
    await suspend
    assert md.status().split()[6] == "1/10"  # stopped after the region in flight
    await md.resume()
    await until(lambda: mirror(md).in_sync)


# --- I/O ------------------------------------------------------------------------------


@run
async def test_writes_go_to_every_leg_and_reads_to_the_default() -> None:
    devs = Devices("a", "b")
    md = await synced(devs)
    write = Io(md, Op.WRITE, 9, 3, b"w")
    await until(lambda: write.done)
    assert write.status is Status.OK
    for leg in ("a", "b"):
        assert devs[leg].read(9, 3) == b"w" * 3 * SECTOR_SIZE
    reads_before = devs["b"].mem.ops[Op.READ]
    read = Io(md, Op.READ, 9, 3)
    await until(lambda: read.done)
    assert read.data() == b"w" * 3 * SECTOR_SIZE
    assert devs["b"].mem.ops[Op.READ] == reads_before
    flush = Io(md, Op.FLUSH)
    await until(lambda: flush.done)
    assert flush.status is Status.OK
    assert devs["a"].mem.ops[Op.FLUSH] == devs["b"].mem.ops[Op.FLUSH] == 1


@run
async def test_a_write_marks_its_region_dirty_until_it_completes() -> None:
    devs = Devices("a", "b")
    md = await synced(devs)
    target = mirror(md)
    devs["a"].hold = True
    write = Io(md, Op.WRITE, 17, 1, b"p")
    await until(lambda: bool(devs["a"].held))
    assert not target.dirty_log.is_clean(2)
    devs["a"].release()
    await until(lambda: write.done)
    await until(lambda: target.dirty_log.is_clean(2))


@run
async def test_read_error_fails_over_to_another_leg() -> None:
    devs = Devices("a", "b")
    md = await synced(devs)
    devs["a"].write(5, b"A" * SECTOR_SIZE)
    devs["b"].write(5, b"B" * SECTOR_SIZE)
    devs["a"].fail = {Op.READ}
    events = md.event_nr
    read = Io(md, Op.READ, 5)
    await until(lambda: read.done)
    assert read.status is Status.OK
    assert read.data() == b"B" * SECTOR_SIZE
    assert md.status().split()[8] == "RA"
    assert md.event_nr == events + 1
    assert mirror(md).default == 1  # handle_errors moved the default off the failed leg


@run
async def test_read_fails_when_every_leg_fails() -> None:
    devs = Devices("a", "b")
    md = await synced(devs)
    devs["a"].fail = devs["b"].fail = {Op.READ}
    read = Io(md, Op.READ, 5)
    await until(lambda: read.done)
    assert read.status is Status.EIO


async def leg_failed_with_writes_held(devs: Devices) -> tuple[MappedDevice, list[Io]]:
    """A synced handle_errors mirror whose leg b fails a write: the leg shows D, one table
    event, and that write and a later one (region 0 is NOSYNC now) are held."""
    md = await synced(devs)
    target = mirror(md)
    devs["b"].fail = {Op.WRITE}
    events = md.event_nr
    first = Io(md, Op.WRITE, 3, 1, b"s")
    await until(lambda: len(target.holds) == 1)
    assert devs["a"].read(3) == b"s" * SECTOR_SIZE
    assert md.event_nr == events + 1
    assert md.status() == f"0 {SECTORS} mirror 2 a b 9/10 1 AD 1 core"
    writes_to_b = devs["b"].mem.ops[Op.WRITE]
    later = Io(md, Op.WRITE, 4, 1, b"t")  # NOSYNC region after a leg failure: held too
    other = Io(md, Op.WRITE, 40, 1, b"u")  # an in-sync region: fails on b, held
    await until(lambda: len(target.holds) == 3)
    for _ in range(100):  # held: nothing completes them while the device is active
        await loop_turn()
    assert not any(w.done for w in (first, later, other))
    assert devs["b"].mem.ops[Op.WRITE] == writes_to_b  # a failed write changes nothing
    assert md.event_nr == events + 1  # one event per leg and kind of error
    assert target.stats()["parked"] == 3
    return md, [first, later, other]


@run
async def test_leg_write_failure_with_handle_errors_holds_writes_until_repaired() -> None:
    """dm-raid1 since 2.6.33 (hold_bio): with handle_errors a leg failure holds writes
    without error; the repair - noflush suspend, a table over the surviving leg, resume -
    completes them with no EIO."""
    devs = Devices("a", "b")
    md, writes = await leg_failed_with_writes_held(devs)
    await md.suspend(noflush=True)
    assert not any(w.done for w in writes)  # handed back and pushed back, not failed
    assert mirror(md).stats()["parked-requeued"] == 3
    assert md.info().deferred == 3
    md.load(parse_table(f"0 {SECTORS} linear a 0", devs, clock=FROZEN))
    await md.resume()
    await until(lambda: all(w.done for w in writes))
    assert [w.status for w in writes] == [Status.OK] * 3
    assert devs["a"].read(4) == b"t" * SECTOR_SIZE
    assert devs["a"].read(40) == b"u" * SECTOR_SIZE


@run
async def test_leg_failure_held_writes_fail_on_a_flush_suspend() -> None:
    devs = Devices("a", "b")
    md, writes = await leg_failed_with_writes_held(devs)
    await md.suspend()
    assert [w.status for w in writes] == [Status.EIO] * 3


@run
async def test_after_an_interrupted_suspend_a_write_to_hold_fails() -> None:
    """The kernel's mirror has no presuspend_undo: after an interrupted suspend a write
    it must hold is handed back, and the core fails the late REQUEUE (seed 001)."""
    devs = Devices("a", "b", "c")
    md = MappedDevice("mix")
    md.create(parse_table(f"0 {SECTORS} mirror core 1 8 2 a 0 b 0 1 handle_errors\n"
                          f"{SECTORS} {SECTORS} linear c 0", devs, clock=FROZEN))
    target = mirror(md)
    await until(lambda: target.in_sync)
    devs["c"].hold = devs["b"].hold = True
    stuck = Io(md, Op.WRITE, SECTORS + 1, 1, b"c")  # keeps the suspend waiting
    late = Io(md, Op.WRITE, 3, 1, b"l")  # in flight on leg b
    await until(lambda: bool(devs["b"].held))
    with pytest.raises(TimeoutError):
        await md.suspend(noflush=True, timeout=0.05)
    assert md.info().state.value == "ACTIVE"
    devs["b"].fail = {Op.WRITE}
    devs["b"].release()  # the leg fails after the interruption
    await until(lambda: late.done)
    assert late.status is Status.EIO
    assert target.stats()["parked-failed"] == 1  # the late REQUEUE
    devs["c"].release()
    assert stuck.status is Status.OK


@run
async def test_leg_write_failure_without_handle_errors_is_hidden_like_the_kernel() -> None:
    """Without handle_errors the write completes (one leg has it), no event is raised,
    and its region goes out of sync (do_failures marks it for every failure)."""
    devs = Devices("a", "b")
    md = await synced(devs, "core 1 8 2 a 0 b 0")
    devs["b"].fail = {Op.WRITE}
    events = md.event_nr
    write = Io(md, Op.WRITE, 3, 1, b"s")
    await until(lambda: write.done)
    assert write.status is Status.OK
    assert md.event_nr == events
    assert md.status().split()[6:9] == ["9/10", "1", "AD"]
    assert mirror(md).holds == []


@run
async def test_write_fails_when_every_leg_fails() -> None:
    devs = Devices("a", "b")
    md = await synced(devs)
    devs["a"].fail = devs["b"].fail = {Op.WRITE}
    write = Io(md, Op.WRITE, 3, 1, b"s")
    await until(lambda: write.done)
    assert write.status is Status.EIO
