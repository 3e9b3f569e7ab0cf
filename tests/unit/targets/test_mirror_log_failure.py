"""mirror with a disk log: what the log device holds, resync after a crash, and seed 000.

Seed 000 ("dm raid1: fix EIO after log failure"): writes whose dirty-log write failed
are held (via the failures list); presuspend stops recovery and requeues them, so a
noflush suspend + table reload + resume completes them with no EIO, while a plain
suspend fails them.
"""

from __future__ import annotations

import struct

from dm.support import loop_turn

from backend.blockio import SECTOR_SIZE, Op, Status
from backend.dm import DeviceState, MappedDevice, parse_table
from backend.targets.dirty_log import MIRROR_MAGIC

from .test_mirror import FROZEN, SECTORS, Devices, Io, create, mirror, run, synced, until

DISK_LOG = "disk 2 log 8 2 a 0 b 0 1 handle_errors"


def header(devs: Devices, log: str = "log") -> tuple[int, int, int]:
    magic, version, regions = struct.unpack_from("<IIQ", devs[log].read(0))
    return magic, version, regions


def clean_bits(devs: Devices, log: str = "log") -> int:
    return int.from_bytes(devs[log].read(2, 1)[:2], "little")


# --- the disk log -----------------------------------------------------------------------


@run
async def test_disk_log_holds_header_and_clean_bits() -> None:
    devs = Devices("a", "b", "log")
    md = await synced(devs, DISK_LOG)
    assert header(devs) == (MIRROR_MAGIC, 2, 10)
    devs["a"].hold = True
    write = Io(md, Op.WRITE, 17, 1, b"w")  # region 2
    await until(lambda: bool(devs["a"].held))
    assert clean_bits(devs) == 0b11_1111_1011  # marked dirty on disk before the write
    devs["a"].release()
    await until(lambda: write.done)
    await md.suspend()  # postsuspend writes the cleared bit
    assert clean_bits(devs) == 0b11_1111_1111


@run
async def test_disk_log_remembers_sync_across_activations() -> None:
    devs = Devices("a", "b", "log")
    first = await synced(devs, DISK_LOG)
    await first.suspend()
    first.remove()
    copied = devs["a"].mem.ops[Op.READ]
    again = create(devs, DISK_LOG, name="again")
    await until(lambda: mirror(again).in_sync)
    assert again.status().split()[6] == "10/10"
    assert devs["a"].mem.ops[Op.READ] == copied  # nothing was copied


@run
async def test_only_regions_dirty_at_a_crash_are_resynced() -> None:
    devs = Devices("a", "b", "log")
    md = await synced(devs, DISK_LOG)
    devs["b"].hold = True
    lost = Io(md, Op.WRITE, 33, 1, b"c")  # region 4 marked dirty, the write never finishes
    await until(lambda: bool(devs["b"].held))
    devs["b"].held.clear()  # the "crash": the write to b is lost
    devs["b"].hold = False
    devs["a"].write(40, b"e" * SECTOR_SIZE)  # region 5: clean on disk, must not be copied
    survivor = create(devs, DISK_LOG, name="survivor")
    await until(lambda: mirror(survivor).in_sync)
    assert devs["b"].read(33) == b"c" * SECTOR_SIZE  # region 4 was copied from a
    assert devs["b"].read(40) == b"\0" * SECTOR_SIZE
    assert not lost.done


# --- seed 000 ---------------------------------------------------------------------------


async def writes_parked_by_a_log_failure(devs: Devices) -> tuple[MappedDevice, list[Io]]:
    """A synced mirror whose log device starts failing, with two writes parked."""
    md = await synced(devs, DISK_LOG)
    target = mirror(md)
    # The resync's clean bits reach the log device only with the next write's flush:
    # write them now, while the log works. Otherwise a resume re-reads "all dirty",
    # resyncs, and whether a reissued write then parks (CLEAN region) or goes to the
    # default leg (NOSYNC, as in the kernel) depends on whether the worker finished
    # that resync before the write arrived: on a loaded machine it had not.
    assert await target.dirty_log.flush()
    assert clean_bits(devs) == 0b11_1111_1111
    events = md.event_nr
    devs["log"].fail = {Op.WRITE}
    writes = [Io(md, Op.WRITE, 3, 1, b"1"), Io(md, Op.WRITE, 40, 2, b"2")]
    await until(lambda: len(target.holds) == 2)
    for _ in range(100):  # parked: nothing completes them while the device is active
        await loop_turn()
    assert not any(w.done for w in writes)
    assert target.log_failure
    assert md.status().endswith("1 AA 3 disk log D")
    assert md.event_nr == events + 1  # the log device failed
    return md, writes


@run
async def test_mirror_log_failure_noflush_suspend_reload_resume_no_eio() -> None:
    devs = Devices("a", "b", "log", "log2")
    md, writes = await writes_parked_by_a_log_failure(devs)
    await md.suspend(noflush=True)
    assert not any(w.done for w in writes)  # pushed back, not failed
    info = md.info()
    assert (info.state, info.in_flight, info.deferred) == (DeviceState.SUSPENDED, 0, 2)
    assert mirror(md).rh.recovery_stopped
    md.load(parse_table(f"0 {SECTORS} mirror disk 2 log2 8 2 a 0 b 0 1 handle_errors", devs,
                        clock=FROZEN))
    await md.resume()
    await until(lambda: all(w.done for w in writes))
    assert [w.status for w in writes] == [Status.OK, Status.OK]
    await until(lambda: mirror(md).in_sync)
    # evidence: both writes were parked and handed back; the new table parked nothing
    # (each table's log was resynced: 10 regions each)
    stats = md.stats()
    assert stats["pushed-back"] == 2 and stats["eio"] == 0
    assert stats["targets"] == [{"parked": 2, "parked-requeued": 2, "parked-failed": 0,
                                 "recoveries": 20, "leg-errors": 0}]
    for leg in ("a", "b"):
        assert devs[leg].read(3) == b"1" * SECTOR_SIZE
        assert devs[leg].read(40, 2) == b"2" * 2 * SECTOR_SIZE
    assert header(devs, "log2") == (MIRROR_MAGIC, 2, 10)


@run
async def test_mirror_log_failure_flush_suspend_fails_parked_writes_with_eio() -> None:
    devs = Devices("a", "b", "log")
    md, writes = await writes_parked_by_a_log_failure(devs)
    await md.suspend()
    assert [w.status for w in writes] == [Status.EIO, Status.EIO]
    assert md.state is DeviceState.SUSPENDED
    stats = md.stats()
    assert (stats["eio"], stats["pushed-back"]) == (2, 0)
    assert stats["targets"] == [{"parked": 2, "parked-requeued": 0, "parked-failed": 2,
                                 "recoveries": 10, "leg-errors": 0}]


@run
async def test_log_failure_parks_flushes_too_and_noflush_pushes_them_back() -> None:
    devs = Devices("a", "b", "log", "log2")
    md, writes = await writes_parked_by_a_log_failure(devs)
    flush = Io(md, Op.FLUSH)
    await until(lambda: len(mirror(md).holds) == 3)
    await md.suspend(noflush=True)
    md.load(parse_table(f"0 {SECTORS} mirror core 1 8 2 a 0 b 0", devs, clock=FROZEN))
    await md.resume()
    await until(lambda: flush.done and all(w.done for w in writes))
    assert flush.status is Status.OK
    assert [w.status for w in writes] == [Status.OK, Status.OK]


@run
async def test_log_failure_without_handle_errors_lets_writes_through() -> None:
    devs = Devices("a", "b", "log")
    md = await synced(devs, "disk 2 log 8 2 a 0 b 0")
    devs["log"].fail = {Op.WRITE}
    write = Io(md, Op.WRITE, 3, 1, b"x")
    await until(lambda: write.done)
    assert write.status is Status.OK
    assert mirror(md).holds == []


@run
async def test_resume_with_the_dead_log_parks_the_writes_again() -> None:
    devs = Devices("a", "b", "log", "log2")
    md, writes = await writes_parked_by_a_log_failure(devs)
    devs["a"].hold = True
    held = Io(md, Op.WRITE, 70, 1, b"h")  # region 8: log already failed, so parked too
    await until(lambda: len(mirror(md).holds) == 3)
    devs["a"].hold = False
    await md.suspend(noflush=True)
    await md.resume()  # same table: the log is still dead, the writes park again
    await until(lambda: len(mirror(md).holds) == 3)
    assert not any(w.done for w in [*writes, held])
    await md.suspend(noflush=True)
    md.load(parse_table(f"0 {SECTORS} mirror disk 2 log2 8 2 a 0 b 0 1 handle_errors", devs,
                        clock=FROZEN))
    await md.resume()
    await until(lambda: all(w.done for w in [*writes, held]))
    assert {w.status for w in [*writes, held]} == {Status.OK}
