"""Evidence counters of one mapped device: what the core and its targets really did.

A scenario that claims "I/O spanned two targets" or "queued I/O was pushed back" proves
it with these (DESIGN.md, "Evidence"). They are plain ints bumped on the I/O path (no
allocation, no call), read only when ``query-dm`` asks. Counts are since the device was
created: when a table is swapped out, its targets' own counters are folded into the
totals kept here by target index, so a repair that replaces the table does not erase
what the old table did.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from backend.dm.table import Table

TargetStats = dict[str, object]
"""A target's own counters: ints, or nested dicts of ints (e.g. per path)."""


class DmStats:
    """The core's counters (``query-dm`` ``stats``); IoPath bumps them in place.

    ``ios``: originals submitted. ``split``: originals cut into more than one piece (a
    pushed-back original that is split again counts again). ``pieces[i]``: pieces mapped
    to the target at index ``i`` (a whole, unsplit I/O is one piece). ``requeued``:
    stage-one requeues of split pieces (seed 003). ``pushed_back``: I/Os parked on the
    pushback list (seed 001). ``deferred_reissued``: I/Os taken off the deferred list
    and mapped. ``flushes``: flush fan-outs started (an empty flush, or the preflush of
    a write with the flush flag; a retried one counts again). ``flush_copies``: empty flush bios
    sent to targets (seed 004): num_flush_bios of every target per fan-out. ``eio``:
    originals completed with an error. ``interrupted_suspends``: suspends cancelled,
    timed out or failed and undone (seed 001's interrupted suspend).
    """

    __slots__ = ("_retired", "deferred_reissued", "eio", "flush_copies", "flushes",
                 "interrupted_suspends", "ios", "pieces", "pushed_back", "requeued", "split")

    def __init__(self) -> None:
        self.ios = 0
        self.split = 0
        self.pieces: list[int] = []
        self.requeued = 0
        self.pushed_back = 0
        self.deferred_reissued = 0
        self.flushes = 0
        self.flush_copies = 0
        self.eio = 0
        self.interrupted_suspends = 0
        self._retired: list[TargetStats] = []

    def table_live(self, table: Table) -> None:
        """A table went live: make room for a piece count per target."""
        missing = len(table.targets) - len(self.pieces)
        if missing > 0:
            self.pieces.extend([0] * missing)

    def retire(self, table: Table) -> None:
        """A table leaves for good: keep its targets' counters (by target index)."""
        for target in table.targets:
            while len(self._retired) <= target.index:
                self._retired.append({})
            add_counters(self._retired[target.index], target.stats())

    def target_stats(self, table: Table | None) -> list[TargetStats]:
        """Per target index: the retired tables' counters plus the live target's."""
        live = list(table.targets) if table is not None else []
        out: list[TargetStats] = []
        for index in range(max(len(live), len(self._retired))):
            merged: TargetStats = {}
            if index < len(self._retired):
                add_counters(merged, self._retired[index])
            if index < len(live):
                add_counters(merged, live[index].stats())
            out.append(merged)
        return out

    def to_json(self, table: Table | None) -> dict[str, object]:
        """The ``stats`` member of a query-dm entry."""
        return {
            "ios": self.ios,
            "split": self.split,
            "pieces": list(self.pieces),
            "requeued": self.requeued,
            "pushed-back": self.pushed_back,
            "deferred-reissued": self.deferred_reissued,
            "flushes": self.flushes,
            "flush-copies": self.flush_copies,
            "eio": self.eio,
            "interrupted-suspends": self.interrupted_suspends,
            "targets": self.target_stats(table),
        }


def add_counters(into: dict[str, object], more: Mapping[str, object]) -> None:
    """Sum ``more`` into ``into``: ints add, nested dicts add key by key, anything else
    (a type name, a state) is taken from ``more``."""
    for key, value in more.items():
        have = into.get(key)
        if isinstance(value, Mapping):
            nested: dict[str, object] = dict(have) if isinstance(have, dict) else {}
            add_counters(nested, value)
            into[key] = nested
        elif isinstance(value, int) and not isinstance(value, bool) \
                and isinstance(have, int) and not isinstance(have, bool):
            into[key] = have + value
        else:
            into[key] = value
