"""error: arguments ignored - every I/O fails with EIO (flushes are not sent to it)."""

from __future__ import annotations

from backend.dm.registry import register
from backend.dm.target import Clone, MapResult, StatusType, Target


@register("error")
class ErrorTarget(Target):
    """dm-error (io_err): map() kills; discards and write-zeroes fail with EIO too."""

    num_flush_bios = 0
    num_discard_bios = 1
    num_write_zeroes_bios = 1

    def ctr(self, args: list[str]) -> None:
        """io_err_ctr: any arguments are accepted and ignored (the table prints none)."""

    def map(self, clone: Clone) -> MapResult:
        return MapResult.KILL

    def status(self, kind: StatusType) -> str:
        return ""
