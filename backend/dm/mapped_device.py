"""A mapped device: live and inactive tables, and the suspend/resume state machine.

Control operations (``create``, ``load``, ``clear``, ``suspend``, ``resume``, ``message``,
``remove``) raise typed errors (StateError, TableError, MessageError, TimeoutError from a
suspend or wait timeout); the I/O side (``submit_bio``) never raises. State::

    ACTIVE --suspend()--> SUSPENDING [BLOCK_IO (+NOFLUSH_SUSPENDING), presuspend, drain,
       ^                      |       postsuspend]
       |                      |  interrupted / failed: undo, back to ACTIVE
       |                      v
       +----resume()----- SUSPENDED     (swaps in the inactive table, if loaded)

    resume() of an ACTIVE device: nothing without an inactive table; with one, suspend
    first, then swap and resume (the kernel's do_resume).

    ACTIVE, SUSPENDED --remove()--> REMOVED

This device is the only authority on its state: every control method is guarded by
:func:`require`, and the daemon asks, it never decides. There is no queue of waiting
operations: one event loop runs everything, and a transition sets its state (SUSPENDING)
in the same step as the guard's check, so a second suspend, a resume or a remove that
arrives while a suspend is under way is refused at once (StateError naming SUSPENDING),
not queued behind a suspend that may be waiting on stuck I/O. ``load`` and ``clear`` are
allowed while suspending, as in the kernel (they only touch the inactive slot).

The semantics are Linux dm's; the seed a line implements is named where it matters.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import inspect
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from backend.blockio import Bio, Status
from backend.dm.events import EventCounter, EventListener, TableEvent
from backend.dm.iopath import IoPath
from backend.dm.stacking import MappedBlockDevice
from backend.dm.table import Table
from backend.dm.target import StatusType, Target
from backend.errors import MessageError, StateError

log = logging.getLogger(__name__)


class DeviceState(enum.Enum):
    ACTIVE = "ACTIVE"
    SUSPENDING = "SUSPENDING"
    """A suspend (or the suspend a resume implies) is under way; dm still reports ACTIVE."""
    SUSPENDED = "SUSPENDED"
    REMOVED = "REMOVED"


ACTIVE, SUSPENDING, SUSPENDED = DeviceState.ACTIVE, DeviceState.SUSPENDING, DeviceState.SUSPENDED
PRESENT = (ACTIVE, SUSPENDING, SUSPENDED)
"""Every state but REMOVED."""

_F = TypeVar("_F", bound=Callable[..., Any])


def require(*states: DeviceState, what: str | None = None) -> Callable[[_F], _F]:
    """Decorator: a MappedDevice method runs only in one of ``states``, else StateError.

    In the style of qemu.qmp's ``@require(Runstate...)``. For a coroutine method the check
    runs when the coroutine starts, and nothing awaits between it and the method's first
    statement: a method that changes the state (suspend sets SUSPENDING) does so in the
    same step of the event loop as the check, so two callers can never both pass it.
    ``what`` names the operation in the error (default: the method's name).
    """
    required = ("a present device" if set(states) == set(PRESENT)
                else " or ".join(state.value for state in states))

    def decorator(func: _F) -> _F:
        operation = what or func.__name__

        def check(md: MappedDevice) -> None:
            if md._state not in states:
                raise StateError(operation, md._state.value, required)

        if inspect.iscoroutinefunction(func):
            @functools.wraps(func)
            async def guarded_coroutine(md: MappedDevice, *args: Any, **kwargs: Any) -> Any:
                check(md)
                return await func(md, *args, **kwargs)
            return cast(_F, guarded_coroutine)

        @functools.wraps(func)
        def guarded(md: MappedDevice, *args: Any, **kwargs: Any) -> Any:
            check(md)
            return func(md, *args, **kwargs)
        return cast(_F, guarded)

    return decorator


@dataclass(frozen=True)
class DeviceInfo:
    """What ``dmsetup info`` shows, plus the core's queue depths.

    ``state`` is what dm reports: ACTIVE until a suspend has completed (the kernel sets
    DMF_SUSPENDED at its end); ``suspending`` says one is under way.
    """

    name: str
    uuid: str | None
    state: DeviceState
    suspending: bool
    block_io: bool
    noflush_suspending: bool
    live_table: bool
    inactive_table: bool
    open_count: int
    event_nr: int
    size_sectors: int
    target_count: int
    in_flight: int
    deferred: int


class MappedDevice:
    """One device-mapper device; a BioSink for vhost/ and, stacked, a BlockDevice."""

    def __init__(self, name: str, uuid: str | None = None) -> None:
        self.name = name
        self.uuid = uuid
        self.log = log.getChild(name)
        self._io = IoPath(self.log)
        # The per-request entry goes straight to the I/O path (no delegating frame).
        self.submit_bio: Callable[[Bio], None] = self._io.submit_bio
        self._events = EventCounter(name, self.log)
        self._state = ACTIVE
        self._inactive: Table | None = None
        self._open_count = 0

    # --- BioSink -------------------------------------------------------------------

    @property
    def size_sectors(self) -> int:
        table = self._io.table
        return table.size_sectors if table is not None else 0

    # submit_bio(bio): submit a request; ``bio.done`` is called exactly once; never
    # raises. An attribute set in __init__: IoPath.submit_bio itself.

    # --- what targets see (TableOwner) -----------------------------------------------

    def raise_table_event(self, event: TableEvent) -> None:
        self._events.raise_event(event)

    def noflush_suspending(self) -> bool:
        return self._io.noflush

    def suspended(self) -> bool:
        return self._state is SUSPENDED

    # --- tables ----------------------------------------------------------------------

    @property
    def state(self) -> DeviceState:
        return self._state

    @property
    def live_table(self) -> Table | None:
        return self._io.table

    @property
    def inactive_table(self) -> Table | None:
        return self._inactive

    @require(ACTIVE)
    def create(self, table: Table, *, suspended: bool = False) -> None:
        """Make ``table`` live on a device that has none (dmsetup create).

        With ``suspended`` the table waits in the inactive slot and the device is
        SUSPENDED until ``resume``. If a target refuses preresume the table is dropped.
        """
        if self._io.table is not None or self._inactive is not None:
            raise StateError("create", "already has a table", "no table")
        self.load(table)
        if suspended:
            self._io.block_io = True
            self._set_state(SUSPENDED)
            return
        try:
            self._go_live()
        except BaseException:
            self.clear()
            raise

    @require(*PRESENT)
    def load(self, table: Table) -> None:
        """Put ``table`` (from parse_table) in the inactive slot, replacing any there."""
        if table is self._io.table or table is self._inactive:
            raise StateError("load", "table already loaded here", "a new table")
        table.bind(self)
        if self._inactive is not None:
            self._inactive.destroy()
        self._inactive = table
        self.log.info("table loaded (inactive): %d targets, %d sectors",
                      len(table.targets), table.size_sectors)

    @require(*PRESENT)
    def clear(self) -> None:
        """Drop the inactive table, if any."""
        if self._inactive is not None:
            self._inactive.destroy()
            self._inactive = None
            self.log.info("inactive table cleared")

    # --- suspend / resume -------------------------------------------------------------

    @require(ACTIVE)
    async def suspend(self, noflush: bool = False, timeout: float | None = None) -> None:
        """Suspend: block new I/O, presuspend targets, drain, postsuspend.

        Flush (default): targets fail I/O they would hold forever. ``noflush``: a REQUEUE
        is pushed back and reissued at resume (seed 001). If the suspend is cancelled,
        times out (TimeoutError) or a hook raises, it is undone and the device is ACTIVE
        again: pushed-back I/O is reissued, targets get ``presuspend_undo``. Refused
        unless ACTIVE: a second suspend while one is under way is told SUSPENDING.
        """
        await self._suspend(noflush, timeout)

    async def _suspend(self, noflush: bool, timeout: float | None) -> None:
        """ACTIVE -> SUSPENDING -> SUSPENDED (or back to ACTIVE if interrupted).

        SUSPENDING is set before the first await: it is what refuses every other
        transition until this one is over (the kernel's md->suspend_lock).
        """
        kind = "noflush" if noflush else "flush"
        targets = list(self._io.table.targets) if self._io.table is not None else []
        presuspended: list[Target] = []
        self._set_state(SUSPENDING)
        try:
            async with asyncio.timeout(timeout):
                if noflush:
                    # seed 001: visible while targets flush, so set before presuspend.
                    self._io.noflush = True
                self._io.block_io = True
                self.log.info("suspend (%s): I/O blocked, presuspending", kind)
                for target in targets:
                    presuspended.append(target)
                    pending = target.presuspend()
                    if pending is not None:
                        await pending
                self.log.info("suspend (%s): waiting for %d in flight", kind, self._io.in_flight)
                await self._io.wait_idle()
                if noflush:
                    # seed 001: cleared after the wait; pushback merged into deferred.
                    self._io.noflush = False
                    self._io.merge_pushback()
                self.log.info("suspend (%s): drained (%d deferred), postsuspending",
                              kind, len(self._io.deferred))
                for target in targets:
                    pending = target.postsuspend()
                    if pending is not None:
                        await pending
        except BaseException as exc:
            self._abort_suspend(presuspended, exc)
            raise
        self._set_state(SUSPENDED)

    def _abort_suspend(self, presuspended: list[Target], exc: BaseException) -> None:
        """Interrupted or failed suspend: undo it; the device acts as if resumed."""
        why = {asyncio.CancelledError: "cancelled", TimeoutError: "timed out"}.get(
            type(exc), f"failed: {exc!r}")
        self.log.info("suspend %s: undoing, back to ACTIVE", why)
        self._io.stats.interrupted_suspends += 1
        # seed 001 flush_and_out: clear the flag and flush the pushback list into the
        # deferred list; a REQUEUE arriving from now on is EIO.
        self._io.noflush = False
        self._io.merge_pushback()
        self._io.block_io = False
        for target in presuspended:
            try:
                target.presuspend_undo()
            except Exception:
                self.log.exception("%r: presuspend_undo raised", target)
        self._set_state(ACTIVE)
        # The aborted suspend acts as the resume: deferred I/O is reissued in order.
        self._io.kick()

    @require(ACTIVE, SUSPENDED)
    async def resume(self, noflush: bool = False) -> bool:
        """Swap in the inactive table (if any), preresume/resume targets, reissue deferred
        I/O in order. Returns False when there was nothing to do.

        As Linux's dm-ioctl ``do_resume`` (drivers/md/dm-ioctl.c): a device that is not
        suspended and has no inactive table is left alone, and that is a success, not an
        error; one that is not suspended but has an inactive table is first suspended
        ("Suspend if it isn't already suspended": a flush suspend, or ``noflush`` as with
        ``dmsetup resume --noflush``, which matters to multipath's queued I/O, seed 001),
        then the table is swapped in and the device resumed. If that implied suspend
        fails or is cancelled it is undone (the device is ACTIVE with the table still
        inactive) and the error raised; if a target refuses preresume, the device stays
        SUSPENDED with the table inactive, as after any refused resume. A ``load`` while
        that suspend runs replaces the inactive table, and the resume swaps in the newer
        one (one inactive slot; the kernel would take the one it found at the start).
        """
        if self._state is ACTIVE:
            if self._inactive is None:
                self.log.info("resume: not suspended and no inactive table: nothing to do")
                return False
            self.log.info("resume: not suspended, with an inactive table: suspending first")
            await self._suspend(noflush, None)
        self._go_live()
        return True

    def _go_live(self) -> None:
        new = self._inactive
        table = new if new is not None else self._io.table
        targets = list(table.targets) if table is not None else []
        for target in targets:
            target.preresume()  # may refuse: nothing has changed yet
        if new is not None:
            old, self._io.table, self._inactive = self._io.table, new, None
            self._io.stats.table_live(new)
            self.log.info("resume: table swapped in (%d targets, %d sectors)",
                          len(new.targets), new.size_sectors)
            if old is not None:
                self._io.stats.retire(old)  # evidence outlives the table
                old.destroy()
        for target in targets:
            target.resume()
        self._io.block_io = False
        self._set_state(ACTIVE)
        self._io.kick()

    # --- control -----------------------------------------------------------------------

    @require(*PRESENT)
    def message(self, sector: int, argv: Sequence[str]) -> str:
        """Send ``argv`` to the live target covering ``sector``; returns its reply."""
        table = self._io.table
        if table is None:
            raise MessageError("no live table")
        if not 0 <= sector < table.size_sectors:
            raise MessageError(f"sector {sector} is outside the device (0..{table.size_sectors})")
        if not argv:
            raise MessageError("empty message")
        target = table.find_target(sector)
        self.log.info("message to %r: %s", target, " ".join(argv))
        return target.message(list(argv))

    def status(self, kind: StatusType = StatusType.INFO, *, inactive: bool = False) -> str:
        """dmsetup status (INFO) / table (TABLE) text of the live or inactive table."""
        table = self._inactive if inactive else self._io.table
        return table.status(kind) if table is not None else ""

    def info(self) -> DeviceInfo:
        table = self._io.table
        return DeviceInfo(
            name=self.name,
            uuid=self.uuid,
            state=ACTIVE if self._state is SUSPENDING else self._state,
            suspending=self._state is SUSPENDING,
            block_io=self._io.block_io,
            noflush_suspending=self._io.noflush,
            live_table=table is not None,
            inactive_table=self._inactive is not None,
            open_count=self._open_count,
            event_nr=self._events.event_nr,
            size_sectors=self.size_sectors,
            target_count=len(table.targets) if table is not None else 0,
            in_flight=self._io.in_flight,
            deferred=len(self._io.deferred) + len(self._io.pushback),
        )

    def stats(self) -> dict[str, object]:
        """The evidence counters since creation (query-dm ``stats``; DESIGN "Evidence")."""
        return self._io.stats.to_json(self._io.table)

    @property
    def event_nr(self) -> int:
        return self._events.event_nr

    async def wait(self, event_nr: int, timeout: float | None = None) -> int:
        """Return the event number once it is not ``event_nr`` (TimeoutError on timeout)."""
        return await self._events.wait(event_nr, timeout)

    def add_event_listener(self, listener: EventListener) -> None:
        self._events.add_listener(listener)

    def remove_event_listener(self, listener: EventListener) -> None:
        self._events.remove_listener(listener)

    @require(*PRESENT)
    def open(self) -> None:
        """A user (an export, a stacked table) holds the device."""
        self._open_count += 1

    def close(self) -> None:
        self._open_count = max(0, self._open_count - 1)

    def as_block_device(self, read_only: bool = False) -> MappedBlockDevice:
        """This device as a BlockDevice for another table (``dm:NAME``); opens it."""
        return MappedBlockDevice(self, read_only)

    @require(ACTIVE, SUSPENDED, what="remove")
    def check_remove(self, force: bool = False) -> None:
        """Raise what ``remove(force)`` would raise, and change nothing: for a caller that
        must take other users (exports) off the device before removing it."""
        self._check_remove(force)

    def _check_remove(self, force: bool) -> None:
        if self._open_count and not force:
            raise StateError("remove", f"open (count {self._open_count})", "closed")
        if self._io.in_flight and not force:
            raise StateError("remove", f"busy ({self._io.in_flight} in flight)", "idle")

    @require(ACTIVE, SUSPENDED)
    def remove(self, force: bool = False) -> None:
        """Destroy the tables; queued I/O fails with EIO. Refused while open or busy
        unless ``force``, and while a suspend is under way even forced (it still holds
        the targets: it is undone, or times out, first)."""
        self._check_remove(force)
        self._io.removed = True
        self._io.fail_queued(Status.EIO)
        for table in (self._io.table, self._inactive):
            if table is not None:
                table.destroy()
        self._io.table = self._inactive = None
        self._set_state(DeviceState.REMOVED)
        self._events.close()

    # --- helpers -----------------------------------------------------------------------

    def _set_state(self, state: DeviceState) -> None:
        if state is not self._state:
            self.log.info("state %s -> %s", self._state.value, state.value)
            self._state = state

    def __repr__(self) -> str:
        return f"<MappedDevice {self.name} {self._state.value}>"
