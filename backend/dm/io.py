"""Per-request accounting: the kernel's ``struct dm_io`` and ``bio_chain``.

A request (a Bio from vhost/ or a stacked table) is mapped as one or more DmIo: one per
target piece after splitting, or one for a flush fanned out to every target. A DmIo
counts its clones and keeps one status; when the last clone ends, the core decides
(pushback, requeue, EIO, done). A split request is tied to its pieces by a
SplitOriginal, which ends the request exactly once, with the first error, when every
piece has ended.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from backend.blockio import SECTOR_SHIFT, Bio, IoVec, Status, iov_slice
from backend.dm.target import Clone, CloneOwner, Target

if TYPE_CHECKING:
    from backend.dm.stats import DmStats


_OK = Status.OK


def merge_status(current: Status, new: Status, *, flush: bool, noflush: bool) -> Status:
    """The status of a DmIo after one more clone ended with ``new``."""
    if new is Status.OK:
        return current
    if flush:
        # seed 004: EOPNOTSUPP supersedes any error, DM_ENDIO_REQUEUE follows,
        # otherwise the first reported error is taken.
        if Status.EOPNOTSUPP in (current, new):
            return Status.EOPNOTSUPP
        if Status.REQUEUE in (current, new):
            return Status.REQUEUE
        return current if current is not Status.OK else new
    # seed 001 dec_pending: "push-back supersedes any I/O errors" (while noflush is set).
    if current is Status.REQUEUE and noflush:
        return current
    return new


class SplitOriginal:
    """A request split into pieces: ends it once, with the first error (bio_chain).
    An original that ends with an error counts once in ``stats.eio``."""

    __slots__ = ("bio", "remaining", "stats", "status")

    def __init__(self, bio: Bio, pieces: int, stats: DmStats | None = None) -> None:
        self.bio = bio
        self.remaining = pieces
        self.stats = stats
        self.status = Status.OK

    def piece_done(self, status: Status) -> None:
        if status is not Status.OK and self.status is Status.OK:
            self.status = status
        self.remaining -= 1
        if self.remaining == 0:
            if self.status is not Status.OK and self.stats is not None:
                self.stats.eio += 1
            self.bio.done(self.status)


class DmIo(Clone):
    """One mapped unit: a piece ``[offset, offset+sectors)`` of ``orig``, or a flush;
    and, as the kernel's ``dm_io`` embeds its first ``dm_target_io``, the piece's first
    clone itself. An unsplit remap takes no object beyond this one; only the copies of a
    discard/write-zeroes and the clones of a flush fan-out are Clones of their own.

    ``pending`` counts clones not yet ended plus one reference held while clones are
    being created (so a clone ending synchronously cannot complete the DmIo early).
    The clone fields (``sector`` after a remap, ``device``, ``private``, ...) are the
    embedded clone's; ``offset``/``sectors`` stay the piece's place in ``orig``.
    """

    __slots__ = ("chain", "flush", "offset", "orig", "pending", "sectors", "status")

    def __init__(
        self,
        owner: CloneOwner,
        orig: Bio,
        target: Target | None,
        offset: int,
        sectors: int,
        iovecs: Sequence[IoVec],
        *,
        chain: SplitOriginal | None = None,
        flush: bool = False,
    ) -> None:
        self.orig = orig
        self.offset = offset
        self.sectors = sectors
        self.chain = chain
        self.flush = flush
        self.pending = 1
        self.status = _OK
        # The embedded clone: Clone.__init__ inlined (one call less per request).
        sector = orig.sector + offset
        self._owner = owner
        self.target = target  # type: ignore[assignment]  # None only for a flush
        self.op = orig.op
        self.sector = sector
        self.target_offset = sector - target.begin if target is not None else 0
        self.nr_sectors = sectors
        self.iovecs = iovecs
        self.target_bio_nr = 0
        self.fua = orig.fua
        self.device = None
        self.private = None
        self.ended = False

    @property
    def io(self) -> DmIo:
        """The embedded clone accounts to its own DmIo (a property: no reference cycle)."""
        return self

    @property
    def was_split(self) -> bool:
        return self.chain is not None

    def rewind(self) -> Bio:
        """seed 003 dm_io_rewind: a bio covering exactly this piece of the original.

        Its completion reports this piece to the original's SplitOriginal; no data
        moves, only the iovec pointers are recomputed.
        """
        assert self.chain is not None
        orig, chain = self.orig, self.chain
        iovecs = (
            iov_slice(orig.iovecs, self.offset << SECTOR_SHIFT, self.sectors << SECTOR_SHIFT)
            if orig.op.has_data
            else []
        )
        piece = Bio(orig.op, orig.sector + self.offset, self.sectors, iovecs, chain.piece_done,
                    fua=orig.fua)
        piece.private = chain  # marks a piece: its errors count once, in the chain
        return piece

    def __repr__(self) -> str:
        kind = "flush" if self.flush else f"{self.orig.sector + self.offset}+{self.sectors}"
        return f"DmIo({self.orig.op.name} {kind} {self.status.name})"
