"""striped: ``<#stripes> <chunk_sectors> {<dev> <offset>}...`` - RAID0 over the devices.

Chunk ``n`` of the target goes to stripe ``n % #stripes``, at chunk ``n // #stripes`` of
that stripe. ``max_io_len`` is the chunk size, so the core never hands map() a clone
that crosses a chunk.
"""

from __future__ import annotations

from backend.blockio import BlockDevice, Op, Status
from backend.dm.args import ArgReader
from backend.dm.events import TableEvent, TableEventKind
from backend.dm.registry import register
from backend.dm.target import Clone, EndIo, EndIoResult, MapResult, StatusType, Target
from backend.errors import TableError

ERROR_EVENT_THRESHOLD = 15
"""Like DM_IO_ERROR_THRESHOLD: stop raising table events after this many errors."""


@register("striped")
class StripedTarget(Target):
    """dm-stripe: data by chunk; flushes to every stripe (target_bio_nr picks it)."""

    num_discard_bios = 1
    num_write_zeroes_bios = 1

    def ctr(self, args: list[str]) -> None:
        reader = ArgReader(args)
        stripes = reader.next_uint("<#stripes>", minimum=1)
        chunk = reader.next_uint("<chunk_sectors>", minimum=1)
        if self.length % stripes:
            raise TableError(f"target length {self.length} not divisible by {stripes} stripes")
        width = self.length // stripes
        if width % chunk:
            raise TableError(f"stripe width {width} not divisible by chunk size {chunk}")
        if reader.remaining != 2 * stripes:
            raise TableError(f"{stripes} stripes need {2 * stripes} <dev> <offset> arguments, "
                             f"got {reader.remaining}")
        self.chunk = chunk
        self.names: list[str] = []
        self.offsets: list[int] = []
        self.devs: list[BlockDevice] = []
        for i in range(stripes):
            name = reader.next(f"<dev> of stripe {i}")
            offset = reader.next_uint(f"<offset> of stripe {i}")
            self.devs.append(self.get_device(name, offset, width))
            self.names.append(name)
            self.offsets.append(offset)
        self.errors = [0] * stripes
        self.max_io_len = chunk
        self.num_flush_bios = stripes

    def map(self, clone: Clone) -> MapResult:
        stripes = len(self.devs)
        if clone.op is Op.FLUSH:
            stripe = clone.target_bio_nr
            clone.remap(self.devs[stripe], self.offsets[stripe])
            return MapResult.REMAPPED
        chunk_nr, into = divmod(clone.target_offset, self.chunk)
        row, stripe = divmod(chunk_nr, stripes)
        clone.remap(self.devs[stripe], self.offsets[stripe] + row * self.chunk + into)
        return MapResult.REMAPPED

    def end_io(self, clone: Clone, status: Status) -> EndIoResult:
        if status in (Status.OK, Status.EOPNOTSUPP, Status.REQUEUE):
            return EndIo.DONE
        for i, dev in enumerate(self.devs):
            if dev is clone.device:
                self.errors[i] += 1
                if self.errors[i] < ERROR_EVENT_THRESHOLD:
                    self.context.table_event(TableEvent(TableEventKind.STRIPE_ERROR,
                                                        self.names[i], stripe=i))
                break
        return EndIo.DONE

    def status(self, kind: StatusType) -> str:
        if kind is StatusType.TABLE:
            pairs = " ".join(f"{n} {o}" for n, o in zip(self.names, self.offsets, strict=True))
            return f"{len(self.devs)} {self.chunk} {pairs}"
        health = "".join("D" if e else "A" for e in self.errors)
        return f"{len(self.devs)} {' '.join(self.names)} 1 {health}"
