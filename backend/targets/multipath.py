"""multipath: one disk reached over several paths, grouped by priority (dm-mpath, bio-based).

Table::

    <#features> [queue_if_no_path] [pg_init_retries N] [pg_init_delay_msecs N]
                [retain_attached_hw_handler] [queue_mode bio|rq|mq] [no_path_retry N]
    <#hw_args> (0: no hw handlers here)
    <#pgs> <initial_pg>
    { <selector> <#sel_args> <sel_args>... <#paths> <#path_args> { <dev> <path_args>... }... }

As in the kernel, a path sees the mapped device's own sector numbers. Each I/O goes to
the path :mod:`backend.targets.path_selectors` picks. An I/O that fails on a path (any
error but the target errors of NO_RETRY_ERRORS) fails that path and is retried on
another. With no valid path, I/O waits in the target if ``queue_if_no_path`` is on, else
fails with EIO; during a noflush suspend it is handed back to the core (REQUEUE =
pushback, seed 001). ``no_path_retry N`` turns queueing on and tells the path checker
(:mod:`backend.checker`, the multipathd analogue) to send ``fail_if_no_path`` after N
checks without a valid path; N = 0 fails at once.

Messages (EBUSY while the device is suspended): ``fail_path DEV``, ``reinstate_path
DEV``, ``queue_if_no_path``, ``fail_if_no_path``, ``switch_group N``, ``enable_group N``,
``disable_group N``. Status is dm-mpath's ``multipath_status``.
"""

from __future__ import annotations

from collections import deque

from backend.blockio import Status
from backend.dm.args import ArgReader
from backend.dm.events import TableEvent, TableEventKind
from backend.dm.paths import PathReport
from backend.dm.registry import register
from backend.dm.target import Clone, EndIo, EndIoResult, MapResult, StatusType, Target
from backend.errors import MessageError, TableError
from backend.targets.path_selectors import (
    Path,
    PathGroups,
    PathSelector,
    PriorityGroup,
    make_selector,
)

NO_RETRY_ERRORS = frozenset({Status.EOPNOTSUPP, Status.ENOSPC, Status.EINVAL, Status.EROFS})
"""noretry_error(): errors of the request itself; another path would answer the same."""


@register("multipath")
class MultipathTarget(Target):
    """dm-mpath: see the module docstring."""

    num_flush_bios = 1
    num_discard_bios = 1
    num_write_zeroes_bios = 1

    # --- construction ---------------------------------------------------------------

    def ctr(self, args: list[str]) -> None:
        reader = ArgReader(args)
        self._parse_features(reader.next_group("feature arguments"))
        if reader.next_group("hardware handler arguments"):
            raise TableError("hardware handlers are not supported (<#hw_args> must be 0)")
        count = reader.next_uint("number of priority groups", maximum=1024)
        initial = reader.next_uint("initial priority group", maximum=1024)
        if (count == 0) != (initial == 0):
            raise TableError(f"invalid initial priority group {initial} of {count}")
        groups = [self._parse_group(reader, n) for n in range(1, count + 1)]
        reader.finish()
        self.groups = PathGroups(groups, initial)
        self.paths = self.groups.paths
        self._saved_queue_if_no_path = self._queue_if_no_path
        self._noflush_pushback = False
        self._queued: deque[Clone] = deque()
        self.queued_total = 0
        """Clones that waited in the target for a path (evidence counter)."""
        self.requeued_total = 0
        """Clones handed back with REQUEUE (pushback during a noflush suspend)."""
        self._kick_scheduled = False
        self._dead = False

    def _parse_features(self, words: list[str]) -> None:
        """parse_features: the kernel's features (queue_if_no_path, pg_init_retries N,
        pg_init_delay_msecs N, retain_attached_hw_handler, queue_mode bio|rq|mq) are all
        accepted and printed back (vudm has no hardware handlers and is bio-based whatever
        the queue_mode, so the last four change nothing else), plus vudm's own
        ``no_path_retry N`` (multipathd's setting, done here by the path checker)."""
        reader = ArgReader(words)
        self._queue_if_no_path = False
        self.no_path_retry: int | None = None
        self._pg_init_retries = 0
        self._pg_init_delay_msecs: int | None = None
        self._retain_hw_handler = False
        self._queue_mode_bio = False
        while reader.remaining:
            word = reader.next("feature").lower()
            if word == "queue_if_no_path":
                self._queue_if_no_path = True
            elif word == "retain_attached_hw_handler":
                self._retain_hw_handler = True
            elif word == "no_path_retry":
                self.no_path_retry = reader.next_uint("no_path_retry count")
            elif word == "pg_init_retries" and reader.remaining:
                self._pg_init_retries = reader.next_uint("pg_init_retries", 1, 50)
            elif word == "pg_init_delay_msecs" and reader.remaining:
                self._pg_init_delay_msecs = reader.next_uint("pg_init_delay_msecs", 0, 60000)
            elif word == "queue_mode" and reader.remaining:
                mode = reader.next("queue_mode").lower()
                if mode not in ("bio", "rq", "mq"):
                    raise TableError(f"unknown queue_mode {mode!r} (bio, rq or mq)")
                self._queue_mode_bio = mode == "bio"
            else:
                raise TableError(f"unrecognised multipath feature {word!r}")
        if self._queue_mode_bio:
            # alloc_multipath_stage2: bio-based only discovers an attached handler
            self._retain_hw_handler = True
        if self.no_path_retry:
            self._queue_if_no_path = True

    def _table_features(self) -> list[str]:
        """The features in multipath_status's order (vudm's no_path_retry last)."""
        features = []
        if self._queue_if_no_path and not self.no_path_retry:
            features.append("queue_if_no_path")
        if self._pg_init_retries:
            features += ["pg_init_retries", str(self._pg_init_retries)]
        if self._pg_init_delay_msecs is not None:
            features += ["pg_init_delay_msecs", str(self._pg_init_delay_msecs)]
        if self._retain_hw_handler:
            features.append("retain_attached_hw_handler")
        if self._queue_mode_bio:
            features += ["queue_mode", "bio"]
        if self.no_path_retry is not None:
            features += ["no_path_retry", str(self.no_path_retry)]
        return features

    def _parse_group(self, reader: ArgReader, number: int) -> PriorityGroup:
        selector: PathSelector[Path] = make_selector(
            reader.next(f"path selector of group {number}"),
            reader.next_group(f"selector arguments of group {number}"))
        group = PriorityGroup(number, selector)
        count = reader.next_uint(f"number of paths in group {number}", 1, 1024)
        nargs = reader.next_uint(f"number of path arguments in group {number}", 0, 1024)
        for i in range(count):
            name = reader.next(f"device of path {i + 1} in group {number}")
            path_args = [reader.next(f"arguments of path {name}") for _ in range(nargs)]
            path = Path(name, self.get_device(name, self.begin, self.length), group)
            selector.add_path(path, path_args)
            group.paths.append(path)
        return group

    def dtr(self) -> None:
        self._dead = True
        queued, self._queued = self._queued, deque()
        for clone in queued:  # the core only destroys a drained table; be safe anyway
            clone.complete(Status.EIO)

    def _must_push_back(self) -> bool:
        """seed 001: a noflush suspend began with queueing on, so no-path I/O is handed
        back to the core (pushed back) instead of failed (the kernel's __must_push_back)."""
        return self._noflush_pushback and self.context.noflush_suspending()

    # --- I/O path (never raises) ------------------------------------------------------

    def map(self, clone: Clone) -> MapResult:
        return self._route(clone)

    def _route(self, clone: Clone) -> MapResult:
        """__multipath_map_bio: remap to a path, queue in the target, requeue or kill."""
        clone.private = None
        path = self.groups.choose(clone.nbytes)
        if path is None:
            if self._queue_if_no_path:
                self.queued_total += 1
                self._queued.append(clone)
                return MapResult.SUBMITTED
            if self._must_push_back():
                self.requeued_total += 1
                return MapResult.REQUEUE
            self.log.debug("no valid path: %r fails", clone)
            return MapResult.KILL
        clone.private = path
        path.ios += 1
        clone.remap(path.device, self.begin + clone.target_offset)
        path.group.selector.start_io(path, clone.nbytes)
        return MapResult.REMAPPED

    def end_io(self, clone: Clone, status: Status) -> EndIoResult:
        """multipath_end_io_bio: a path error fails the path and retries the I/O."""
        path: Path | None = clone.private
        clone.private = None
        if path is not None:
            path.group.selector.end_io(path, clone.nbytes)
        # path None: the target ended this clone itself (queue flush), status decided.
        if path is None or status is Status.OK or status in NO_RETRY_ERRORS \
                or status is Status.REQUEUE:
            return EndIo.DONE
        self.log.debug("%r failed on %s: %s", clone, path.name, status.name)
        self._fail_path(path)
        if self.groups.valid == 0 and not self._queue_if_no_path:
            if self._must_push_back():
                self.requeued_total += 1
                return EndIo.REQUEUE
            return Status.EIO
        self.queued_total += 1
        self._queued.append(clone)
        if self.groups.valid:
            self._kick()
        return EndIo.INCOMPLETE

    def _kick(self) -> None:
        """process_queued_io_list: re-map the queued clones soon (on the loop)."""
        if not self._queued or self._kick_scheduled or self._dead:
            return
        self._kick_scheduled = True
        self.context.call_soon(self._kicked)

    def _kicked(self) -> None:
        self._kick_scheduled = False
        if not self._dead:
            self._process_queued()

    def _process_queued(self) -> None:
        """process_queued_bios: each queued clone is mapped again, in order."""
        batch, self._queued = self._queued, deque()
        for clone in batch:
            result = self._route(clone)
            if result is MapResult.REMAPPED:
                clone.issue()
            elif result is MapResult.REQUEUE:
                clone.complete(Status.REQUEUE)
            elif result is MapResult.KILL:
                clone.complete(Status.EIO)

    @property
    def queued(self) -> int:
        """Clones waiting in the target for a path."""
        return len(self._queued)

    # --- path state ---------------------------------------------------------------

    @property
    def valid_paths(self) -> int:
        return self.groups.valid

    def _fail_path(self, path: Path) -> bool:
        if not self.groups.fail(path):
            return False
        self.log.warning("failing path %s", path.name)
        self.context.table_event(TableEvent(TableEventKind.PATH_FAILED, path.name,
                                            valid_paths=self.valid_paths))
        return True

    def _reinstate_path(self, path: Path) -> bool:
        if not self.groups.reinstate(path):
            return False
        self.log.warning("reinstating path %s", path.name)
        self.context.table_event(TableEvent(TableEventKind.PATH_REINSTATED, path.name,
                                            valid_paths=self.valid_paths))
        self._kick()
        return True

    # --- the path-report protocol (backend.dm.paths: what the path checker uses) -------

    def path_reports(self) -> list[PathReport]:
        return [PathReport(p.name, p.device, p.active, p.fail_count) for p in self.paths]

    def fail_path(self, name: str) -> bool:
        """``fail_path NAME`` (the table's name or the device's); True if one changed."""
        changed = False
        for path in self._paths_named(name):
            changed = self._fail_path(path) or changed
        return changed

    def reinstate_path(self, name: str) -> bool:
        """``reinstate_path NAME``; True if one changed."""
        changed = False
        for path in self._paths_named(name):
            changed = self._reinstate_path(path) or changed
        return changed

    def set_queue_if_no_path(self, on: bool) -> None:
        """``queue_if_no_path`` / ``fail_if_no_path``."""
        self._refuse_if_suspended()
        self._set_queue_if_no_path(on, save_old=False)

    def _paths_named(self, name: str) -> list[Path]:
        self._refuse_if_suspended()
        paths = [p for p in self.paths if name in (p.name, p.device.name)]
        if not paths:
            raise MessageError(f"multipath: no path {name!r} in this target")
        return paths

    def _refuse_if_suspended(self) -> None:
        if self.context.suspended():
            raise MessageError("multipath: device is suspended", Status.EBUSY)

    @property
    def queue_if_no_path(self) -> bool:
        return self._queue_if_no_path

    def _set_queue_if_no_path(self, on: bool, save_old: bool) -> None:
        """queue_if_no_path(): set the flag, keep the value resume restores, and let
        queued I/O go (be failed or pushed back) when queueing stops."""
        self._saved_queue_if_no_path = (self._queue_if_no_path if save_old else on)
        self._queue_if_no_path = on
        if not on:
            self._kick()

    # --- suspend / resume ---------------------------------------------------------------

    def presuspend(self) -> None:
        """Suspend cannot finish while I/O waits here for a path: stop queueing (saving
        the setting) and release the queue now - EIO for a flush suspend, REQUEUE
        (pushback) for a noflush suspend that began with queueing on (seed 001)."""
        self._noflush_pushback = self._queue_if_no_path and self.context.noflush_suspending()
        self._set_queue_if_no_path(False, save_old=True)
        self._process_queued()

    def resume(self) -> None:
        """Restore queue_if_no_path as it was before presuspend."""
        self._queue_if_no_path = self._saved_queue_if_no_path
        self._noflush_pushback = False

    def stats(self) -> dict[str, object]:
        """Evidence: clones per path, path failures, clones queued for a path and
        handed back (REQUEUE) to the core."""
        return {
            "paths": {p.name: {"ios": p.ios, "failures": p.fail_count} for p in self.paths},
            "path-failures": sum(p.fail_count for p in self.paths),
            "queued": self.queued_total,
            "requeued": self.requeued_total,
        }

    # --- control ----------------------------------------------------------------------

    def message(self, argv: list[str]) -> str:
        self._refuse_if_suspended()
        verb = argv[0].lower()
        if len(argv) == 1 and verb in ("queue_if_no_path", "fail_if_no_path"):
            self.set_queue_if_no_path(verb == "queue_if_no_path")
            return ""
        if len(argv) != 2:
            raise MessageError(f"multipath: invalid message arguments: {' '.join(argv)!r}")
        if verb in ("fail_path", "reinstate_path"):
            (self.fail_path if verb == "fail_path" else self.reinstate_path)(argv[1])
            return ""
        if verb in ("switch_group", "enable_group", "disable_group"):
            group = self._group_arg(argv[1])
            if verb == "switch_group":
                self.groups.switch(group)
            else:
                self.groups.bypass(group, verb == "disable_group")
            self.context.table_event(TableEvent(TableEventKind.GROUP_CHANGED, detail=verb,
                                                group=group.number))
            return ""
        raise MessageError(f"multipath: unrecognised message {argv[0]!r}")

    def _group_arg(self, text: str) -> PriorityGroup:
        groups = self.groups.groups
        if not text.isdigit() or not 1 <= int(text) <= len(groups):
            raise MessageError(f"multipath: invalid priority group number {text!r}")
        return groups[int(text) - 1]

    def status(self, kind: StatusType) -> str:
        """multipath_status: features, hw handler, groups, then each group and path."""
        info = kind is StatusType.INFO
        if info:
            # queue_io (set at construction, cleared by the first switch into a group:
            # __switch_pg without a hw handler), pg_init_count (no hw handler: 0)
            words = ["2", "0" if self.groups.ever_switched else "1", "0"]
        else:
            features = self._table_features()
            words = [str(len(features)), *features]
        groups = self.groups.groups
        words += ["0", str(len(groups)), str(self.groups.shown_group)]
        for g in groups:
            if info:
                words.append("D" if g.bypassed else "A" if g is self.groups.current else "E")
            else:
                words.append(g.selector.name)
            args = g.selector.info_args if info else g.selector.table_args
            words += [g.selector.status(kind), str(len(g.paths)), str(args)]
            for p in g.paths:
                words.append(p.name)
                if info:
                    words += ["A" if p.active else "F", str(p.fail_count)]
                words.append(g.selector.path_status(p, kind))
        return " ".join(w for w in words if w)
