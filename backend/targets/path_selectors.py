"""Path selection for the multipath target: which path the next I/O gets.

Two levels, as in dm-mpath. :class:`PathGroups` picks the priority group (the kernel's
``choose_pgpath``: a switch_group request first, then the current group until it has no
usable path, then the other groups, bypassed ones last). Inside a group a selector picks
among its valid paths, as the kernel's ``struct path_selector_type`` does: round-robin,
queue-length and service-time (dm-ps-*.c). Selectors know paths only as hashable keys.
Status text follows the kernel's ``*_status``: the group part is ``0`` (no selector
arguments), the path part is the selector's per-path INFO or TABLE arguments.
"""

from __future__ import annotations

import abc
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar

from backend.blockio import BlockDevice
from backend.dm.args import parse_uint
from backend.dm.target import StatusType
from backend.errors import TableError

P = TypeVar("P", bound=Hashable)


@dataclass
class PathInfo:
    """A selector's per-path state: the table arguments and the load in flight."""

    repeat_count: int = 1
    relative_throughput: int = 1
    in_flight: int = 0
    """I/Os in flight (queue-length)."""
    in_flight_bytes: int = 0
    """Bytes in flight (service-time)."""


class PathSelector(abc.ABC, Generic[P]):
    """A priority group's path selector; paths are kept valid-first in selection order."""

    name: ClassVar[str] = ""
    table_args: ClassVar[int] = 0
    """Number of per-path arguments printed in TABLE status (the ``#path_args``)."""
    info_args: ClassVar[int] = 0
    """Number of per-path values printed in INFO status."""
    max_path_args: ClassVar[int] = 1

    def __init__(self, args: list[str]) -> None:
        # The kernel's three selectors take selector arguments and ignore them.
        self._valid: list[P] = []
        self._failed: list[P] = []
        self._info: dict[P, PathInfo] = {}

    def add_path(self, path: P, args: list[str]) -> None:
        """Take a path and its per-path arguments; TableError names a bad one."""
        if len(args) > self.max_path_args:
            raise TableError(f"{self.name}: incorrect number of path arguments ({len(args)})")
        info = PathInfo()
        if args:
            # "repeat_count > 1 is deprecated, using 1 instead" (all three selectors)
            info.repeat_count = min(parse_uint(args[0], f"{self.name} repeat count"), 1)
        self._parse_extra(info, args[1:])
        self._info[path] = info
        self._valid.append(path)

    def _parse_extra(self, info: PathInfo, args: list[str]) -> None:
        """Per-path arguments after repeat_count (service-time's relative_throughput)."""

    def fail_path(self, path: P) -> None:
        if path in self._valid:
            self._valid.remove(path)
            self._failed.append(path)

    def reinstate_path(self, path: P) -> None:
        if path in self._failed:
            self._failed.remove(path)
            self._valid.append(path)

    @abc.abstractmethod
    def select_path(self, nr_bytes: int) -> P | None:
        """The path for the next I/O of ``nr_bytes``, or None when no path is valid."""

    def start_io(self, path: P, nr_bytes: int) -> None:
        info = self._info[path]
        info.in_flight += 1
        info.in_flight_bytes += nr_bytes

    def end_io(self, path: P, nr_bytes: int) -> None:
        info = self._info[path]
        info.in_flight -= 1
        info.in_flight_bytes -= nr_bytes

    def status(self, kind: StatusType) -> str:
        """The group part: number of selector arguments (none for these three)."""
        return "0"

    @abc.abstractmethod
    def path_status(self, path: P, kind: StatusType) -> str:
        """The per-path part (may be empty)."""

    def _to_back(self, path: P) -> None:
        # "Move most recently used to least preferred to evenly balance."
        self._valid.remove(path)
        self._valid.append(path)


class RoundRobin(PathSelector[P]):
    """round-robin: each valid path in turn, ``repeat_count`` I/Os at a time."""

    name = "round-robin"
    table_args = 1
    info_args = 0

    def __init__(self, args: list[str]) -> None:
        super().__init__(args)
        self._current: P | None = None
        self._left = 0

    def select_path(self, nr_bytes: int) -> P | None:
        if self._current in self._valid and self._left > 0:
            self._left -= 1
            return self._current
        if not self._valid:
            self._current = None
            return None
        path = self._valid[0]
        self._to_back(path)
        self._current, self._left = path, self._info[path].repeat_count - 1
        return path

    def path_status(self, path: P, kind: StatusType) -> str:
        return str(self._info[path].repeat_count) if kind is StatusType.TABLE else ""


class QueueLength(PathSelector[P]):
    """queue-length: the valid path with the fewest I/Os in flight (first wins a tie)."""

    name = "queue-length"
    table_args = 1
    info_args = 1

    def select_path(self, nr_bytes: int) -> P | None:
        best: P | None = None
        for path in self._valid:
            if best is None or self._info[path].in_flight < self._info[best].in_flight:
                best = path
            if self._info[best].in_flight == 0:
                break
        if best is not None:
            self._to_back(best)
        return best

    def path_status(self, path: P, kind: StatusType) -> str:
        info = self._info[path]
        return str(info.repeat_count if kind is StatusType.TABLE else info.in_flight)


class ServiceTime(PathSelector[P]):
    """service-time: the valid path with the least (bytes in flight + I/O) / throughput.

    ``relative_throughput`` 0..100 per path; a path with 0 is used only when no path
    with a positive value is valid (st_compare_load).
    """

    name = "service-time"
    table_args = 2
    info_args = 2
    max_path_args = 2

    def _parse_extra(self, info: PathInfo, args: list[str]) -> None:
        if args:
            info.relative_throughput = parse_uint(
                args[0], "service-time relative_throughput", maximum=100)

    def _compare(self, p1: P, p2: P, incoming: int) -> int:
        """< 0 when ``p1`` is the better path for ``incoming`` more bytes."""
        i1, i2 = self._info[p1], self._info[p2]
        sz1, sz2 = i1.in_flight_bytes, i2.in_flight_bytes
        t1, t2 = i1.relative_throughput, i2.relative_throughput
        if t1 == t2:
            return sz1 - sz2
        if sz1 == sz2 or not t1 or not t2:
            return t2 - t1
        st1, st2 = (sz1 + incoming) * t2, (sz2 + incoming) * t1
        return st1 - st2 if st1 != st2 else t2 - t1

    def select_path(self, nr_bytes: int) -> P | None:
        best: P | None = None
        for path in self._valid:
            if best is None or self._compare(path, best, nr_bytes) < 0:
                best = path
        if best is not None:
            self._to_back(best)
        return best

    def path_status(self, path: P, kind: StatusType) -> str:
        info = self._info[path]
        first = info.repeat_count if kind is StatusType.TABLE else info.in_flight_bytes
        return f"{first} {info.relative_throughput}"


SELECTORS: dict[str, type[PathSelector[Any]]] = {
    cls.name: cls for cls in (RoundRobin, QueueLength, ServiceTime)
}


def make_selector(name: str, args: list[str]) -> PathSelector[Any]:
    """A new selector of type ``name``; TableError for an unknown type."""
    cls = SELECTORS.get(name)
    if cls is None:
        raise TableError(f"unknown path selector type {name!r} (known: {', '.join(SELECTORS)})")
    return cls(args)


# --- priority groups ------------------------------------------------------------------


@dataclass(eq=False)
class Path:
    """One path (the kernel's pgpath): a device in a group, up (A) or failed (F)."""

    name: str
    device: BlockDevice
    group: PriorityGroup
    active: bool = True
    fail_count: int = 0
    ios: int = 0
    """Clones sent down this path (evidence counter)."""


@dataclass(eq=False)
class PriorityGroup:
    """Paths sharing one selector; numbered from 1 in table order."""

    number: int
    selector: PathSelector[Path]
    paths: list[Path] = field(default_factory=list)
    bypassed: bool = False


class PathGroups:
    """The priority groups of one multipath target and the one in use."""

    def __init__(self, groups: list[PriorityGroup], initial: int) -> None:
        self.groups = groups
        self.paths = [p for g in groups for p in g.paths]
        self.valid = len(self.paths)
        self.current: PriorityGroup | None = None
        # the kernel accepts an initial group past the last one: then there is none
        self.next: PriorityGroup | None = (groups[initial - 1] if 0 < initial <= len(groups)
                                           else None)
        """Switch to this group at the next I/O (the initial group, or switch_group)."""
        self.ever_switched = False
        """A path was ever chosen: the kernel's queue_io status bit is 1 until then."""

    def choose(self, nr_bytes: int) -> Path | None:
        """choose_pgpath: the path for an I/O of ``nr_bytes``, None if there is none."""
        if self.valid == 0:
            self.current = None
            return None
        if self.next is not None:
            group, self.next = self.next, None
            if (path := self._choose_in(group, nr_bytes)) is not None:
                return path
        # "Don't change PG until it has no remaining paths."
        if self.current is not None and (
                path := self._choose_in(self.current, nr_bytes)) is not None:
            return path
        # The groups not bypassed first; the bypassed ones only as a last resort.
        for bypassed in (False, True):
            for group in self.groups:
                if group.bypassed == bypassed and (
                        path := self._choose_in(group, nr_bytes)) is not None:
                    return path
        self.current = None
        return None

    def _choose_in(self, group: PriorityGroup, nr_bytes: int) -> Path | None:
        path = group.selector.select_path(nr_bytes)
        if path is not None:
            self.current = group
            self.ever_switched = True
        return path

    def fail(self, path: Path) -> bool:
        """Take ``path`` out of use; False if it already was."""
        if not path.active:
            return False
        path.group.selector.fail_path(path)
        path.active = False
        path.fail_count += 1
        self.valid -= 1
        return True

    def reinstate(self, path: Path) -> bool:
        """Put ``path`` back in use; False if it already was."""
        if path.active:
            return False
        path.group.selector.reinstate_path(path)
        path.active = True
        self.valid += 1
        return True

    def switch(self, group: PriorityGroup) -> None:
        """switch_pg_num: use ``group`` from the next I/O on; every group is enabled."""
        for g in self.groups:
            g.bypassed = False
        self.next, self.current = group, None

    def bypass(self, group: PriorityGroup, bypassed: bool) -> None:
        """bypass_pg: avoid ``group`` while another has a usable path (or stop avoiding)."""
        group.bypassed = bypassed
        self.current = None

    @property
    def shown_group(self) -> int:
        """The group number status reports: next, else current, else 1 (0: no groups)."""
        group = self.next or self.current
        return group.number if group else (1 if self.groups else 0)
