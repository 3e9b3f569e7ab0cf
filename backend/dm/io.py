"""Per-request accounting: the kernel's ``struct dm_io`` and ``bio_chain``.

A request (a Bio from vhost/ or a stacked table) is mapped as one or more DmIo: one per
target piece after splitting, or one for a flush fanned out to every target. A DmIo
counts its clones and keeps one status; when the last clone ends, the core decides
(pushback, requeue, EIO, done). A split request is tied to its pieces by a
SplitOriginal, which ends the request exactly once, with the first error, when every
piece has ended.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from backend.blockio import SECTOR_SHIFT, Bio, Status, iov_slice
from backend.dm.target import Target

if TYPE_CHECKING:
    from backend.dm.stats import DmStats


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
            self.bio.end(self.status)


class DmIo:
    """One mapped unit: a piece ``[offset, offset+sectors)`` of ``orig``, or a flush.

    ``pending`` counts clones not yet ended plus one reference held while clones are
    being created (so a clone ending synchronously cannot complete the DmIo early).
    """

    __slots__ = ("chain", "flush", "offset", "orig", "pending", "sectors", "status", "target")

    def __init__(
        self,
        orig: Bio,
        target: Target | None,
        offset: int,
        sectors: int,
        *,
        chain: SplitOriginal | None = None,
        flush: bool = False,
    ) -> None:
        self.orig = orig
        self.target = target
        self.offset = offset
        self.sectors = sectors
        self.chain = chain
        self.flush = flush
        self.pending = 1
        self.status = Status.OK

    @property
    def was_split(self) -> bool:
        return self.chain is not None

    def finish(self, status: Status) -> None:
        """Report this unit's final status to whoever waits for it."""
        if self.chain is not None:
            self.chain.piece_done(status)
        else:
            self.orig.end(status)

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
