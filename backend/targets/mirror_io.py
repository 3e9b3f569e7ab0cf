"""The mirror's legs and the I/O it does to several of them at once.

``fan_out`` is dm-io's multi-region request: one operation to many legs, one callback
with the set of legs that failed. ``copy_region`` is kcopyd for recovery: read a region
from the default leg into a buffer, then write it to the others. Both complete on the
loop thread, possibly before they return (devices may complete synchronously).
"""

from __future__ import annotations

import ctypes
import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from backend.blockio import SECTOR_SHIFT, BlockDevice, IoVec, Op, Status


class LegError(enum.IntEnum):
    """enum dm_raid1_error: why a leg was failed (status shows the most severe)."""

    WRITE = 0
    FLUSH = 1
    SYNC = 2
    READ = 3


@dataclass(eq=False)
class Leg:
    """One mirror leg (struct mirror): a device, an offset and its error record."""

    name: str
    offset: int
    dev: BlockDevice
    error_count: int = 0
    errors: set[LegError] = field(default_factory=set)

    def status_char(self) -> str:
        """device_status_char: A(live), F(lush), D(ead: write), S(ync), R(ead) failure."""
        if not self.error_count:
            return "A"
        for kind, char in ((LegError.FLUSH, "F"), (LegError.WRITE, "D"),
                           (LegError.SYNC, "S"), (LegError.READ, "R")):
            if kind in self.errors:
                return char
        return "U"


def fan_out(legs: Sequence[Leg], op: Op, target_offset: int, nr_sectors: int,
            iovecs: Sequence[IoVec], done: Callable[[set[int]], None], *,
            fua: bool = False) -> None:
    """Send ``op`` on ``nr_sectors`` at ``target_offset`` to every leg; ``done`` gets the
    indices (into ``legs``) of those that failed. FUA is a write then a flush per leg."""
    failed: set[int] = set()
    remaining = len(legs) + 1  # +1 until every leg has been submitted

    def finish(index: int | None, status: Status) -> None:
        nonlocal remaining
        if index is not None and status is not Status.OK:
            failed.add(index)
        remaining -= 1
        if remaining == 0:
            done(failed)

    for index, leg in enumerate(legs):
        def leg_done(status: Status, index: int = index, leg: Leg = leg) -> None:
            if fua and op is Op.WRITE and status is Status.OK:
                leg.dev.submit(Op.FLUSH, 0, 0, [], lambda st: finish(index, st))
            else:
                finish(index, status)

        length = nr_sectors << SECTOR_SHIFT if op is not Op.FLUSH else 0
        offset = (leg.offset + target_offset) << SECTOR_SHIFT if op is not Op.FLUSH else 0
        leg.dev.submit(op, offset, length, list(iovecs) if op.has_data else [], leg_done)
    finish(None, Status.OK)


def copy_region(source: Leg, dests: Sequence[Leg], target_offset: int, nr_sectors: int,
                done: Callable[[bool, set[int]], None]) -> None:
    """kcopyd: ``done(read_failed, failed dest indices)`` once the copy has finished."""
    size = nr_sectors << SECTOR_SHIFT
    buf = ctypes.create_string_buffer(size)
    iovecs = [(ctypes.addressof(buf), size)]

    # The callbacks hold ``buf`` (default arguments) until the last write completes.
    def written(failed: set[int], _keep: object = buf) -> None:
        done(False, failed)

    def read(status: Status, _keep: object = buf) -> None:
        if status is not Status.OK:
            done(True, set())
            return
        fan_out(dests, Op.WRITE, target_offset, nr_sectors, iovecs, written)

    source.dev.submit(Op.READ, (source.offset + target_offset) << SECTOR_SHIFT, size, iovecs,
                      read)
