"""Table lines the seed scenarios are built from (dmsetup syntax, one target per line)."""

from __future__ import annotations

from collections.abc import Callable

from .common import MIB_SECTORS, mpath_table

Line = Callable[[int, int], str]
"""A table line for ``(start, length)``."""


def alternating(sectors: int, piece: int, *lines: Line) -> str:
    """``sectors`` cut into ``piece``-sector targets that take turns among ``lines``: with
    ``piece`` below a guest write's size, every such write spans targets of each kind."""
    out, start, turn = [], 0, 0
    while start < sectors:
        length = min(piece, sectors - start)
        out.append(lines[turn % len(lines)](start, length))
        start, turn = start + length, turn + 1
    return "\n".join(out)


def linear(dev: str) -> Line:
    """Linear onto ``dev`` at the device's own sector numbers."""
    return lambda start, length: f"{start} {length} linear {dev} {start}"


def multipath(paths: list[str], *, queue_if_no_path: bool = True) -> Line:
    return lambda start, length: mpath_table(start, length, paths,
                                             queue_if_no_path=queue_if_no_path)


def mirror(start: int, length: int, legs: list[str], *, log: str | None = None,
           region: int = 1024) -> str:
    """dm-raid1 with handle_errors over ``legs`` (each at offset 0), a disk log on
    ``log`` (a core log without), ``nosync``: fresh legs are equal, nothing to copy."""
    log_args = f"disk 3 {log} {region} nosync" if log else f"core 2 {region} nosync"
    leg_args = " ".join(f"{leg} 0" for leg in legs)
    return f"{start} {length} mirror {log_args} {len(legs)} {leg_args} 1 handle_errors"


def mib(n: int) -> int:
    return n * MIB_SECTORS
