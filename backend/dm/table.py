"""Tables: dmsetup text in, constructed targets out, and back to text.

``parse_table(text, resolve)`` reads ``<start> <length> <type> <args...>`` lines
(``#`` comment lines and blank lines are ignored), checks they are contiguous from
sector 0 with positive lengths, and constructs every target. Any failure rejects the
whole table with a TableError naming the line and the reason (like ``ti->error``), after
destroying (``dtr``) the targets already constructed. ``Table.status(TABLE)`` prints
lines that parse back to the same table.
"""

from __future__ import annotations

import bisect
import logging
from typing import Protocol

from backend.blockio import BlockDevice
from backend.dm import registry
from backend.dm.args import parse_uint
from backend.dm.clock import LOOP_CLOCK, Clock
from backend.dm.events import TableEvent
from backend.dm.target import DeviceResolver, StatusType, Target
from backend.errors import LimitError, StateError, TableError
from backend.limits import MAX_U63, check_ascii, check_words

log = logging.getLogger(__name__)


class TableOwner(Protocol):
    """The mapped device a table is loaded into, as its targets see it."""

    @property
    def name(self) -> str: ...

    def raise_table_event(self, event: TableEvent) -> None: ...

    def noflush_suspending(self) -> bool: ...

    def suspended(self) -> bool: ...


class TableContext:
    """The TargetContext every target of one table shares; bound at ``load``.

    The clock's methods are the context's own (bound once here: flakey asks the time on
    every I/O).
    """

    def __init__(self, clock: Clock = LOOP_CLOCK) -> None:
        self.owner: TableOwner | None = None
        self.clock = clock
        self.now = clock.now
        self.call_soon = clock.call_soon
        self.call_at = clock.call_at
        self.start = clock.start
        self.sleep = clock.sleep

    @property
    def device_name(self) -> str:
        return self.owner.name if self.owner is not None else "unbound"

    def logger(self, name: str) -> logging.Logger:
        return logging.getLogger(name).getChild(self.device_name)

    def table_event(self, event: TableEvent) -> None:
        if self.owner is None:
            log.info("table event on an unbound table dropped: %s", event.reason)
            return
        self.owner.raise_table_event(event)

    def noflush_suspending(self) -> bool:
        return self.owner is not None and self.owner.noflush_suspending()

    def suspended(self) -> bool:
        return self.owner is not None and self.owner.suspended()


class Table:
    """An ordered, contiguous list of constructed targets."""

    def __init__(self, targets: list[Target], context: TableContext) -> None:
        self.targets = tuple(targets)
        self.context = context
        self._begins = [t.begin for t in targets]
        self._ends = [t.end for t in targets]
        self.size_sectors = self._ends[-1] if targets else 0
        """Size in sectors (the end of the last target)."""
        self._destroyed = False
        for index, target in enumerate(targets):
            target.index = index
            target.has_end_io = type(target).end_io is not Target.end_io
        self.only: Target | None = (
            targets[0] if len(targets) == 1 and not targets[0].max_io_len else None)
        """The one target of a one-target table that never cuts a request (a lone
        ``linear``, say): it holds every range inside the table, no lookup needed."""
        only = self.only
        self.direct = (only.remap_to if only is not None and not only.has_end_io
                       else None)
        """``(dev, delta)`` when every whole read or write of this table is that
        device's, ``delta`` sectors on (``Target.remap_to`` of its one target)."""

    def find_target(self, sector: int) -> Target:
        """The target covering ``sector`` (which must be inside the table)."""
        return self.targets[bisect.bisect_right(self._begins, sector) - 1]

    def whole_target(self, sector: int, nr_sectors: int) -> Target | None:
        """The target holding all of ``sector``..``+nr_sectors`` when nothing cuts the
        range (no target boundary, no max_io_len); None when it must be split."""
        i = bisect.bisect_right(self._begins, sector) - 1
        target = self.targets[i]
        if sector + nr_sectors <= self._ends[i] and not target.max_io_len:
            return target
        return None

    def bind(self, owner: TableOwner) -> None:
        """Attach the table to the device it is loaded into (once)."""
        if self.context.owner is not None and self.context.owner is not owner:
            raise StateError("load", f"table already loaded into {self.context.owner.name}",
                             "an unused table")
        self.context.owner = owner

    def status(self, kind: StatusType) -> str:
        """dmsetup status/table text: one ``<start> <length> <type> <text>`` line each."""
        lines = []
        for t in self.targets:
            text = t.status(kind)
            lines.append(f"{t.begin} {t.length} {t.type_name}" + (f" {text}" if text else ""))
        return "\n".join(lines)

    def devices(self) -> list[BlockDevice]:
        """Every device the targets map onto, in table order, without repeats."""
        seen: dict[int, BlockDevice] = {}
        for t in self.targets:
            for dev in t.iterate_devices():
                seen.setdefault(id(dev), dev)
        return list(seen.values())

    def destroy(self) -> None:
        """dtr every target, last first; idempotent."""
        if self._destroyed:
            return
        self._destroyed = True
        _destroy(list(self.targets))

    def __repr__(self) -> str:
        return f"<Table {len(self.targets)} targets, {self.size_sectors} sectors>"


def _destroy(targets: list[Target]) -> None:
    for t in reversed(targets):
        try:
            t.dtr()
        except Exception:  # a dtr bug must not hide the table error being reported
            log.exception("dtr of %r failed", t)


def parse_table(text: str, resolve: DeviceResolver, *, clock: Clock = LOOP_CLOCK) -> Table:
    """Parse and construct a whole table; TableError(reason, line) rejects it as a whole.

    ``clock`` is what its targets' context gives them (tests: a manual clock)."""
    context = TableContext(clock)
    targets: list[Target] = []
    try:
        check_ascii(text, "table")
    except LimitError as e:
        raise TableError(str(e)) from None
    try:
        for lineno, raw in enumerate(text.splitlines(), start=1):
            words = raw.split()
            if not words or words[0].startswith("#"):
                continue
            targets.append(_construct(words, lineno, targets, context, resolve))
        if not targets:
            raise TableError("table has no targets")
    except BaseException:
        _destroy(targets)
        raise
    return Table(targets, context)


def _construct(
    words: list[str],
    lineno: int,
    previous: list[Target],
    context: TableContext,
    resolve: DeviceResolver,
) -> Target:
    """One line: check its place in the table, then build and ctr its target."""
    try:
        try:
            check_words(words, "table line")
        except LimitError as e:
            raise TableError(str(e)) from None
        if len(words) < 3:
            raise TableError("expected <start> <length> <type> [args...]")
        start = parse_uint(words[0], "start sector")
        length = parse_uint(words[1], "length", minimum=1)
        if start + length > MAX_U63:
            raise TableError(f"target ends at sector {start + length}, past 63 bits")
        expected = previous[-1].end if previous else 0
        if start > expected:
            raise TableError(f"gap in table: target starts at {start}, previous ends at {expected}")
        if start < expected:
            raise TableError(
                f"target overlaps the previous one: starts at {start}, previous ends at {expected}"
            )
        cls = registry.lookup(words[2])
        target = cls(context, start, length, resolve)
        try:
            target.ctr(words[3:])
        except TableError:
            raise
        except Exception as exc:  # a ctr bug still names the line
            raise TableError(f"{words[2]}: constructor failed: {exc!r}") from exc
        return target
    except TableError as exc:
        if exc.line:
            raise
        raise TableError(exc.reason, lineno) from exc
