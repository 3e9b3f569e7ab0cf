"""The target protocol, modelled on the kernel's ``struct target_type``.

A target type is a subclass of :class:`Target` registered by name (see
:mod:`backend.dm.registry`). The table parser builds one instance per table line with
``cls(context, begin, length, resolve)`` and then calls :meth:`Target.ctr` with the line's
arguments. Policy (pushback, noflush, splitting, flush fan-out) lives in the core: a
target only answers ``MapResult`` / ``EndIo`` values and says REQUEUE when it wants an
I/O back. Everything else a target needs comes from ``self.context`` (a
:class:`TargetContext`): time and timers, call_soon, background work, table events
(:class:`backend.dm.events.TableEvent`), the device's suspend state; ``self.log`` is
the target module's logger for its mapped device.

Life cycle and hooks, in the order the core calls them::

    ctr(args)          validate, raise TableError(reason) (the parser adds the line)
    preresume()        may refuse (raise) before the table goes live
    resume()
    map(clone)         -> MapResult            (I/O path: never raise)
    end_io(clone, st)  -> EndIo | Status       (I/O path: never raise)
    presuspend()       may be a coroutine; noflush_suspending() tells which kind
    presuspend_undo()  suspend was interrupted or failed (default: resume())
    postsuspend()      may be a coroutine
    dtr()

The clone, the piece of a request one target sees (the kernel's per-target bio), is
declared here with the target, as device-mapper.h declares both: each names the other.
The core builds one clone per target piece (and one per flush/discard copy), hands it to
``Target.map`` and owns its completion. A target that maps by remapping sets the device
and sector with :meth:`Clone.remap`; a target that takes ownership (``SUBMITTED``, or
``INCOMPLETE`` from ``end_io``) later calls :meth:`Clone.issue` (send it to the device it
was remapped to) or :meth:`Clone.complete` (end it with a status). Both go through the
target's ``end_io``, like the kernel's ``clone_endio``.
"""

from __future__ import annotations

import abc
import enum
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, ClassVar, Protocol

from backend.blockio import SECTOR_SHIFT, BlockDevice, IoVec, Op, Status
from backend.dm.clock import Clock
from backend.dm.events import TableEvent
from backend.errors import DeviceError, MessageError, TableError

DeviceResolver = Callable[[str], BlockDevice]
"""Turns a device name from a table line into a BlockDevice; raises DeviceError."""

_OK, _WRITE, _FLUSH = Status.OK, Op.WRITE, Op.FLUSH

class CloneOwner(Protocol):
    """The core side of a clone: where its completion and submission go."""

    def clone_endio(self, clone: Clone, status: Status) -> None: ...

    def issue_clone(self, clone: Clone) -> None: ...


class Clone:
    """One target's view of (part of) a request.

    ``sector`` starts as the mapped device's sector and becomes the device's sector after
    :meth:`remap`; ``target_offset`` stays the offset inside the target (the kernel's
    ``dm_target_offset``). ``target_bio_nr`` numbers the copies of a flush or discard
    sent to one target (``num_flush_bios`` of them). ``private`` is the target's own.
    """

    __slots__ = (
        "_owner",
        "device",
        "ended",
        "fua",
        "io",
        "iovecs",
        "nr_sectors",
        "op",
        "private",
        "sector",
        "target",
        "target_bio_nr",
        "target_offset",
    )

    def __init__(
        self,
        owner: CloneOwner,
        io: Any,
        target: Target,
        op: Op,
        sector: int,
        nr_sectors: int,
        iovecs: Sequence[IoVec],
        *,
        target_bio_nr: int = 0,
        fua: bool = False,
    ) -> None:
        self._owner = owner
        self.io = io
        self.target = target
        self.op = op
        self.sector = sector
        self.target_offset = sector - target.begin
        self.nr_sectors = nr_sectors
        self.iovecs = iovecs
        self.target_bio_nr = target_bio_nr
        self.fua = fua
        self.device: BlockDevice | None = None
        self.private: Any = None
        self.ended = False
        """Set by the core once end_io has finished the clone for good."""

    @property
    def nbytes(self) -> int:
        return self.nr_sectors << SECTOR_SHIFT

    def remap(self, device: BlockDevice, sector: int) -> None:
        """Point the clone at ``sector`` of ``device`` (what REMAPPED tells the core to use)."""
        self.device = device
        self.sector = sector

    def issue(self) -> None:
        """Submit the remapped clone to its device; its completion goes through end_io."""
        self._owner.issue_clone(self)

    def __call__(self, status: Status) -> None:
        """The device finished the remapped clone. The clone is its own completion
        callback (what ``issue`` hands the device), so no closure is made per I/O."""
        if self.fua and status is _OK and self.op is _WRITE and self.device is not None:
            # FUA emulated as the block layer does without it: the write, then a flush.
            self.device.submit(_FLUSH, 0, 0, [], self._flushed)
        else:
            self._owner.clone_endio(self, status)

    def _flushed(self, status: Status) -> None:
        self._owner.clone_endio(self, status)

    def complete(self, status: Status) -> None:
        """Complete a clone the target owns; goes through the target's end_io.

        ``Status.REQUEUE`` here is the target asking for pushback (e.g. multipath
        handing back its queue during a noflush suspend).
        """
        self._owner.clone_endio(self, status)

    def __repr__(self) -> str:
        return f"Clone({self.op.name} {self.sector}+{self.nr_sectors} #{self.target_bio_nr})"


class MapResult(enum.Enum):
    """What ``map`` did with a clone (the kernel's DM_MAPIO_*)."""

    REMAPPED = "remapped"
    """The target called ``clone.remap(dev, sector)``; the core submits the clone."""
    SUBMITTED = "submitted"
    """The target owns the clone and will ``clone.issue()`` or ``clone.complete(status)``."""
    KILL = "kill"
    """Fail the clone with EIO now (end_io is not called)."""
    REQUEUE = "requeue"
    """Hand the I/O back: pushback during a noflush suspend, EIO otherwise."""
    DELAY_REQUEUE = "delay_requeue"
    """Same as REQUEUE for this core (bio-based dm treats them alike)."""


class EndIo(enum.Enum):
    """What ``end_io`` decided (the kernel's DM_ENDIO_*).

    ``end_io`` may also return a :class:`Status`: DONE with that status instead.
    """

    DONE = "done"
    """Complete the clone with the status it came with."""
    INCOMPLETE = "incomplete"
    """The target took the clone back and will issue or end it again (e.g. retry on
    another path)."""
    REQUEUE = "requeue"
    """Hand the I/O back, as MapResult.REQUEUE."""


EndIoResult = EndIo | Status


class StatusType(enum.Enum):
    """Which status text: runtime state (dmsetup status) or the table arguments."""

    INFO = "info"
    TABLE = "table"


class TargetContext(Clock, Protocol):
    """Everything a target gets from outside, and the one way it gets it (the kernel's
    ``ti->table`` and ``dm_table_get_md``): the mapped device it serves (its name, a
    logger, its suspend state, its table events) and the clock (time, call_soon/call_at,
    background work; see :class:`backend.dm.clock.Clock`).

    All targets of one table share a context. A table that is not (yet) loaded into a
    device answers "not suspending" and drops table events with a log line.
    """

    @property
    def device_name(self) -> str: ...

    def logger(self, name: str) -> logging.Logger:
        """``name``'s logger, a child per mapped device (``<name>.<device>``): records
        say which device without each message naming it."""
        ...

    def table_event(self, event: TableEvent) -> None:
        """dm_table_event: the device's event number rises and listeners get ``event``."""
        ...

    def noflush_suspending(self) -> bool:
        """dm_noflush_suspending: a noflush suspend is in progress (REQUEUE = pushback)."""
        ...

    def suspended(self) -> bool:
        """dm_suspended: the device is suspended."""
        ...


class Target(abc.ABC):
    """Base class of every target type; subclasses implement ``ctr``, ``map``, ``status``.

    ``num_flush_bios`` empty flushes go to the target for every flush (0: none);
    ``num_discard_bios`` / ``num_write_zeroes_bios`` copies of each DISCARD / WRITE_ZEROES
    piece (0: the core fails them with EOPNOTSUPP without asking); ``max_io_len``
    (sectors, 0 = no limit) makes the core split I/O at multiples of it, counted from the
    target's start. Set them as instance attributes in ``ctr`` when they depend on args.
    """

    type_name: ClassVar[str] = ""
    """The table name, set by ``@register``."""

    num_flush_bios: int = 1
    num_discard_bios: int = 0
    num_write_zeroes_bios: int = 0
    max_io_len: int = 0
    index: int = 0
    """Position in its table (set by Table): the index of ``pieces`` and ``targets`` in
    the device's evidence counters."""
    has_end_io: bool = True
    """Whether the core calls ``end_io`` on completion: set by Table when it is built,
    False for a type that keeps the default (DONE), so those skip the call."""
    remap_to: tuple[BlockDevice, int] | None = None
    """``(dev, delta)``, set in ``ctr`` by a target whose ``map`` of a read or write is
    only ``clone.remap(dev, clone.sector + delta)`` and that has no ``end_io`` (linear).
    A table of that one target lets the core send whole reads and writes straight to
    ``dev``: no map() call and no per-request object (``IoPath.submit_bio``)."""

    def __init__(
        self, context: TargetContext, begin: int, length: int, resolve: DeviceResolver
    ) -> None:
        self.context = context
        self.begin = begin
        self.length = length
        self._resolve = resolve
        self._devices: list[BlockDevice] = []

    @property
    def log(self) -> logging.Logger:
        """The target module's logger for this target's mapped device (from the context)."""
        return self.context.logger(type(self).__module__)

    # --- construction ---------------------------------------------------------------

    def ctr(self, args: list[str]) -> None:
        """Validate and keep ``args``; raise TableError(reason). Default: no arguments."""
        if args:
            raise TableError(f"{self.type_name}: no arguments required, got {len(args)}")

    def dtr(self) -> None:  # noqa: B027 - optional hook
        """Release what ctr took (stop timers, end clones still held)."""

    def get_device(self, name: str, start: int = 0, length: int | None = None) -> BlockDevice:
        """dm_get_device: resolve ``name`` and check ``length`` sectors from ``start`` fit.

        Raises TableError naming the device; the device is then listed by
        ``iterate_devices``.
        """
        try:
            device = self._resolve(name)
        except DeviceError as exc:
            raise TableError(f"{self.type_name}: device lookup failed: {name}: {exc}") from exc
        if length is not None:
            have = device.size >> SECTOR_SHIFT
            if start + length > have:
                raise TableError(
                    f"{self.type_name}: device {name} too small for target: "
                    f"needs sectors {start}..{start + length}, has {have}"
                )
        self._devices.append(device)
        return device

    # --- I/O path (never raise) -------------------------------------------------------

    @abc.abstractmethod
    def map(self, clone: Clone) -> MapResult:
        """Map one clone; see MapResult."""

    def end_io(self, clone: Clone, status: Status) -> EndIoResult:
        """Look at a finished clone; return EndIo or a replacement Status."""
        return EndIo.DONE

    # --- suspend / resume -------------------------------------------------------------

    def presuspend(self) -> Awaitable[None] | None:
        """Start flushing: during a noflush suspend, end held I/O with REQUEUE; otherwise
        fail I/O the target would hold forever. May be ``async``."""
        return None

    def presuspend_undo(self) -> None:
        """Undo presuspend after an interrupted or failed suspend. Default: ``resume()``."""
        self.resume()

    def postsuspend(self) -> Awaitable[None] | None:
        """Everything is drained: stop background work. May be ``async``."""
        return None

    def preresume(self) -> None:  # noqa: B027 - optional hook
        """Last check before the table goes live; raise a VudmError to refuse."""

    def resume(self) -> None:  # noqa: B027 - optional hook
        """The table is live again and I/O flows."""

    # --- introspection and control ----------------------------------------------------

    @abc.abstractmethod
    def status(self, kind: StatusType) -> str:
        """INFO: runtime state; TABLE: arguments that ``ctr`` parses back identically."""

    def stats(self) -> dict[str, object]:
        """The target's own evidence counters (ints, or dicts of ints), for query-dm's
        ``stats.targets``: what it injected, queued, parked. Default: none."""
        return {}

    def message(self, argv: list[str]) -> str:
        """Handle ``dmsetup message``; return the reply or raise MessageError."""
        raise MessageError(f"{self.type_name}: target does not accept messages")

    def iterate_devices(self) -> list[BlockDevice]:
        """The devices this target maps onto (those taken with ``get_device``)."""
        return list(self._devices)

    @property
    def end(self) -> int:
        """First sector after this target."""
        return self.begin + self.length

    def __repr__(self) -> str:
        return f"<{self.type_name} {self.begin}+{self.length}>"
