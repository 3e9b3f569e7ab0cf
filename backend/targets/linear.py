"""linear: ``<dev> <offset>`` - map the target's sectors onto ``dev`` from ``offset``."""

from __future__ import annotations

from backend.dm.args import ArgReader
from backend.dm.registry import register
from backend.dm.target import Clone, MapResult, StatusType, Target

_REMAPPED = MapResult.REMAPPED


@register("linear")
class LinearTarget(Target):
    """dm-linear: every clone is remapped; flushes, discards and write-zeroes pass through."""

    num_flush_bios = 1
    num_discard_bios = 1
    num_write_zeroes_bios = 1

    def ctr(self, args: list[str]) -> None:
        reader = ArgReader(args)
        self.dev_name = reader.next("<dev>")
        self.offset = reader.next_uint("<offset>")
        reader.finish()
        self.dev = self.get_device(self.dev_name, self.offset, self.length)
        self.remap_to = (self.dev, self.offset - self.begin)

    def map(self, clone: Clone) -> MapResult:
        # Clone.remap's two stores, written out as linear_map sets bi_bdev and
        # bi_sector: this is every request's target, and a call is a frame.
        clone.device = self.dev
        clone.sector = self.offset + clone.target_offset
        return _REMAPPED

    def status(self, kind: StatusType) -> str:
        return f"{self.dev_name} {self.offset}" if kind is StatusType.TABLE else ""
