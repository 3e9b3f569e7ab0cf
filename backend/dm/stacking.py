"""A mapped device seen as a BlockDevice, so another table can map onto it (``dm:NAME``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from backend.blockio import (
    SECTOR_SHIFT,
    SECTOR_SIZE,
    Bio,
    BlockDeviceBase,
    Completion,
    IoVec,
    Op,
    Status,
)


class Stackable(Protocol):
    """What a MappedBlockDevice needs of the mapped device under it. A protocol, not
    MappedDevice itself: mapped_device.py hands itself out through this module, so
    importing it back would be a circle."""

    @property
    def name(self) -> str: ...

    @property
    def size_sectors(self) -> int: ...

    def open(self) -> None: ...

    def close(self) -> None: ...

    def submit_bio(self, bio: Bio) -> None: ...


class MappedBlockDevice(BlockDeviceBase):
    """BlockDevice over a MappedDevice; holds the device open until ``close``."""

    def __init__(self, md: Stackable, read_only: bool = False) -> None:
        super().__init__(f"dm:{md.name}", read_only=read_only)
        self.md = md
        self._open = True
        md.open()

    @property
    def size(self) -> int:
        """The mapped device's size now (a table reload can change it)."""
        return self.md.size_sectors << SECTOR_SHIFT

    def submit(
        self, op: Op, offset: int, length: int, iovecs: Sequence[IoVec], done: Completion
    ) -> None:
        """Turn the byte request into a bio on the mapped device (never raises)."""
        if offset % SECTOR_SIZE or length % SECTOR_SIZE:
            done(Status.EINVAL)
            return
        if self._read_only and op in (Op.WRITE, Op.DISCARD, Op.WRITE_ZEROES):
            done(Status.EROFS)
            return
        self.md.submit_bio(
            Bio(op, offset >> SECTOR_SHIFT, length >> SECTOR_SHIFT, iovecs, done)
        )

    def close(self) -> None:
        """Drop the open count taken at construction (idempotent)."""
        if self._open:
            self._open = False
            self.md.close()

    def __repr__(self) -> str:
        return f"<MappedBlockDevice {self.name}>"
