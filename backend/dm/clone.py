"""The clone: the piece of a request one target sees, like the kernel's per-target bio.

The core builds one clone per target piece (and one per flush/discard copy), hands it to
``Target.map`` and owns its completion. A target that maps by remapping sets the device
and sector with :meth:`Clone.remap`; a target that takes ownership (``SUBMITTED``, or
``INCOMPLETE`` from ``end_io``) later calls :meth:`Clone.issue` (send it to the device it
was remapped to) or :meth:`Clone.complete` (end it with a status). Both go through the
target's ``end_io``, like the kernel's ``clone_endio``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from backend.blockio import SECTOR_SHIFT, BlockDevice, IoVec, Op, Status

_OK, _WRITE, _FLUSH = Status.OK, Op.WRITE, Op.FLUSH

if TYPE_CHECKING:
    from backend.dm.target import Target


class CloneOwner(Protocol):
    """The core side of a clone: where its completion and submission go."""

    def clone_endio(self, clone: Clone, status: Status) -> None: ...

    def issue_clone(self, clone: Clone) -> None: ...


class Clone:
    """One target's view of (part of) a request.

    ``sector`` starts as the mapped device's sector and becomes the device's sector after
    :meth:`remap`; ``target_offset`` stays the offset inside the target (the kernel's
    ``dm_target_offset``). ``target_bio_nr`` numbers the copies of a flush or discard
    sent to one target (``num_flush_bios`` of them). ``private`` is the target's own.
    """

    __slots__ = (
        "_owner",
        "device",
        "ended",
        "fua",
        "io",
        "iovecs",
        "nr_sectors",
        "op",
        "private",
        "sector",
        "target",
        "target_bio_nr",
        "target_offset",
    )

    def __init__(
        self,
        owner: CloneOwner,
        io: Any,
        target: Target,
        op: Op,
        sector: int,
        nr_sectors: int,
        iovecs: Sequence[IoVec],
        *,
        target_bio_nr: int = 0,
        fua: bool = False,
    ) -> None:
        self._owner = owner
        self.io = io
        self.target = target
        self.op = op
        self.sector = sector
        self.target_offset = sector - target.begin
        self.nr_sectors = nr_sectors
        self.iovecs = iovecs
        self.target_bio_nr = target_bio_nr
        self.fua = fua
        self.device: BlockDevice | None = None
        self.private: Any = None
        self.ended = False
        """Set by the core once end_io has finished the clone for good."""

    @property
    def nbytes(self) -> int:
        return self.nr_sectors << SECTOR_SHIFT

    def remap(self, device: BlockDevice, sector: int) -> None:
        """Point the clone at ``sector`` of ``device`` (what REMAPPED tells the core to use)."""
        self.device = device
        self.sector = sector

    def issue(self) -> None:
        """Submit the remapped clone to its device; its completion goes through end_io."""
        self._owner.issue_clone(self)

    def __call__(self, status: Status) -> None:
        """The device finished the remapped clone. The clone is its own completion
        callback (what ``issue`` hands the device), so no closure is made per I/O."""
        if self.fua and status is _OK and self.op is _WRITE and self.device is not None:
            # FUA emulated as the block layer does without it: the write, then a flush.
            self.device.submit(_FLUSH, 0, 0, [], self._flushed)
        else:
            self._owner.clone_endio(self, status)

    def _flushed(self, status: Status) -> None:
        self._owner.clone_endio(self, status)

    def complete(self, status: Status) -> None:
        """Complete a clone the target owns; goes through the target's end_io.

        ``Status.REQUEUE`` here is the target asking for pushback (e.g. multipath
        handing back its queue during a noflush suspend).
        """
        self._owner.clone_endio(self, status)

    def __repr__(self) -> str:
        return f"Clone({self.op.name} {self.sector}+{self.nr_sectors} #{self.target_bio_nr})"
