"""zero: no arguments - reads return zeroes, writes and discards are dropped."""

from __future__ import annotations

from backend.blockio import Op, Status, iov_zero
from backend.dm.registry import register
from backend.dm.target import Clone, MapResult, StatusType, Target


@register("zero")
class ZeroTarget(Target):
    """dm-zero: completes every clone itself (SUBMITTED); flushes are not sent to it."""

    num_flush_bios = 0
    num_discard_bios = 1
    num_write_zeroes_bios = 1

    def map(self, clone: Clone) -> MapResult:
        if clone.op is Op.READ:
            iov_zero(clone.iovecs)
        clone.complete(Status.OK)
        return MapResult.SUBMITTED

    def status(self, kind: StatusType) -> str:
        return ""
