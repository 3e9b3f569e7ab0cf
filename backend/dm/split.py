"""Where a request is cut: at target boundaries and at a target's max_io_len."""

from __future__ import annotations

from backend.dm.table import Table
from backend.dm.target import Target


def split_ranges(table: Table, sector: int, nr_sectors: int) -> list[tuple[Target, int, int]]:
    """``(target, sector, nr_sectors)`` pieces covering ``sector`` .. ``+nr_sectors``.

    ``max_io_len`` boundaries are multiples of it counted from the target's start, as in
    the kernel's ``max_io_len_target_boundary``.
    """
    pieces: list[tuple[Target, int, int]] = []
    end = sector + nr_sectors
    pos = sector
    target = table.find_target(pos)
    while pos < end:
        while pos >= target.end:
            target = table.find_target(pos)
        limit = target.end
        if target.max_io_len:
            into = (pos - target.begin) % target.max_io_len
            limit = min(limit, pos + target.max_io_len - into)
        count = min(end, limit) - pos
        pieces.append((target, pos, count))
        pos += count
    return pieces
