"""A mapped device: live and inactive tables, and the suspend/resume state machine.

Control operations (``create``, ``load``, ``clear``, ``suspend``, ``resume``, ``message``,
``remove``) raise typed errors (StateError, TableError, MessageError, TimeoutError from a
suspend or wait timeout); the I/O side (``submit_bio``) never raises. State::

    ACTIVE --suspend()--> [BLOCK_IO (+NOFLUSH_SUSPENDING), presuspend, drain, postsuspend]
       ^                          |  interrupted / failed: undo, back to ACTIVE
       |                          v
       +------resume()------- SUSPENDED     (swaps in the inactive table, if loaded)

    any --remove()--> REMOVED

The semantics are Linux dm's; the seed a line implements is named where it matters.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from backend.blockio import Bio, Status
from backend.dm.events import EventCounter, EventListener, TableEvent
from backend.dm.iopath import IoPath
from backend.dm.stacking import MappedBlockDevice
from backend.dm.table import Table
from backend.dm.target import MessageError, StatusType, Target
from backend.errors import StateError

log = logging.getLogger(__name__)


class DeviceState(enum.Enum):
    ACTIVE = "ACTIVE"
    SUSPENDED = "SUSPENDED"
    REMOVED = "REMOVED"


@dataclass(frozen=True)
class DeviceInfo:
    """What ``dmsetup info`` shows, plus the core's queue depths."""

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
        self._state = DeviceState.ACTIVE
        self._inactive: Table | None = None
        self._suspending = False
        self._open_count = 0

    # --- BioSink -------------------------------------------------------------------

    @property
    def size_sectors(self) -> int:
        table = self._io.table
        return table.size_sectors if table is not None else 0

    # submit_bio(bio): submit a request; ``bio.end`` is called exactly once; never
    # raises. An attribute set in __init__: IoPath.submit_bio itself.

    # --- what targets see (TableOwner) -----------------------------------------------

    def raise_table_event(self, event: TableEvent) -> None:
        self._events.raise_event(event)

    def noflush_suspending(self) -> bool:
        return self._io.noflush

    def suspended(self) -> bool:
        return self._state is DeviceState.SUSPENDED

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

    def create(self, table: Table, *, suspended: bool = False) -> None:
        """Make ``table`` live on a device that has none (dmsetup create).

        With ``suspended`` the table waits in the inactive slot and the device is
        SUSPENDED until ``resume``. If a target refuses preresume the table is dropped.
        """
        self._require_present("create")
        if self._io.table is not None or self._inactive is not None:
            raise StateError("create", "already has a table", "no table")
        self.load(table)
        if suspended:
            self._io.block_io = True
            self._set_state(DeviceState.SUSPENDED)
            return
        try:
            self._go_live()
        except BaseException:
            self.clear()
            raise

    def load(self, table: Table) -> None:
        """Put ``table`` (from parse_table) in the inactive slot, replacing any there."""
        self._require_present("load")
        if table is self._io.table or table is self._inactive:
            raise StateError("load", "table already loaded here", "a new table")
        table.bind(self)
        if self._inactive is not None:
            self._inactive.destroy()
        self._inactive = table
        self.log.info("table loaded (inactive): %d targets, %d sectors",
                      len(table.targets), table.size_sectors)

    def clear(self) -> None:
        """Drop the inactive table, if any."""
        self._require_present("clear")
        if self._inactive is not None:
            self._inactive.destroy()
            self._inactive = None
            self.log.info("inactive table cleared")

    # --- suspend / resume -------------------------------------------------------------

    async def suspend(self, noflush: bool = False, timeout: float | None = None) -> None:
        """Suspend: block new I/O, presuspend targets, drain, postsuspend.

        Flush (default): targets fail I/O they would hold forever. ``noflush``: a REQUEUE
        is pushed back and reissued at resume (seed 001). If the suspend is cancelled,
        times out (TimeoutError) or a hook raises, it is undone and the device is ACTIVE
        again: pushed-back I/O is reissued, targets get ``presuspend_undo``.
        """
        self._require_present("suspend")
        if self._suspending:
            raise StateError("suspend", "SUSPENDING", "ACTIVE")
        if self._state is DeviceState.SUSPENDED:
            raise StateError("suspend", "SUSPENDED", "ACTIVE")
        kind = "noflush" if noflush else "flush"
        targets = list(self._io.table.targets) if self._io.table is not None else []
        presuspended: list[Target] = []
        self._suspending = True
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
                self.log.info("suspend (%s): waiting for %d in flight", kind, self._io.inflight)
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
        finally:
            self._suspending = False
        self._set_state(DeviceState.SUSPENDED)

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
        # The aborted suspend acts as the resume: deferred I/O is reissued in order.
        self._io.kick()

    async def resume(self) -> None:
        """Swap in the inactive table (if any), preresume/resume targets, reissue deferred
        I/O in order. A no-op on an ACTIVE device without an inactive table."""
        self._require_present("resume")
        if self._suspending:
            raise StateError("resume", "SUSPENDING", "SUSPENDED")
        if self._state is DeviceState.ACTIVE:
            if self._inactive is None:
                return
            if self._io.table is not None:
                raise StateError("resume with an inactive table", "ACTIVE", "SUSPENDED")
        self._go_live()

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
        self._set_state(DeviceState.ACTIVE)
        self._io.kick()

    # --- control -----------------------------------------------------------------------

    def message(self, sector: int, argv: Sequence[str]) -> str:
        """Send ``argv`` to the live target covering ``sector``; returns its reply."""
        self._require_present("message")
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
            state=self._state,
            suspending=self._suspending,
            block_io=self._io.block_io,
            noflush_suspending=self._io.noflush,
            live_table=table is not None,
            inactive_table=self._inactive is not None,
            open_count=self._open_count,
            event_nr=self._events.event_nr,
            size_sectors=self.size_sectors,
            target_count=len(table.targets) if table is not None else 0,
            in_flight=self._io.inflight,
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

    def open(self) -> None:
        """A user (an export, a stacked table) holds the device."""
        self._require_present("open")
        self._open_count += 1

    def close(self) -> None:
        self._open_count = max(0, self._open_count - 1)

    def as_block_device(self, read_only: bool = False) -> MappedBlockDevice:
        """This device as a BlockDevice for another table (``dm:NAME``); opens it."""
        return MappedBlockDevice(self, read_only)

    def remove(self, force: bool = False) -> None:
        """Destroy the tables; queued I/O fails with EIO. Refused while open or busy
        unless ``force``."""
        self._require_present("remove")
        if self._suspending:
            raise StateError("remove", "SUSPENDING", "ACTIVE or SUSPENDED")
        if self._open_count and not force:
            raise StateError("remove", f"open (count {self._open_count})", "closed")
        if self._io.inflight and not force:
            raise StateError("remove", f"busy ({self._io.inflight} in flight)", "idle")
        self._io.removed = True
        self._io.fail_queued(Status.EIO)
        for table in (self._io.table, self._inactive):
            if table is not None:
                table.destroy()
        self._io.table = self._inactive = None
        self._set_state(DeviceState.REMOVED)
        self._events.close()

    # --- helpers -----------------------------------------------------------------------

    def _require_present(self, what: str) -> None:
        if self._state is DeviceState.REMOVED:
            raise StateError(what, "REMOVED", "a present device")

    def _set_state(self, state: DeviceState) -> None:
        if state is not self._state:
            self.log.info("state %s -> %s", self._state.value, state.value)
            self._state = state

    def __repr__(self) -> str:
        return f"<MappedDevice {self.name} {self._state.value}>"
