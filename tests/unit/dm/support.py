"""Test support: a controllable target, request helpers, an async test runner.

``test-hold <dev> <offset>`` maps linearly like ``linear`` but can, on demand: hold
clones (SUBMITTED, released later), answer REQUEUE/KILL from map, override end_io,
answer flushes with a chosen status, fail or refuse hooks, and behave like multipath with
queue_if_no_path at presuspend (push held I/O back during noflush, fail it otherwise).
Every hook call is appended to the module-level ``CALLS`` log.
"""

from __future__ import annotations

import asyncio
import ctypes
import functools
import types
from collections.abc import Awaitable, Callable, Coroutine, Generator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import backend.targets  # noqa: F401  (registers linear, striped, error, zero)
from backend.blockio import SECTOR_SIZE, Bio, BlockDevice, Op, Status, iov_to_bytes
from backend.devices.mem import MemDevice
from backend.dm import (
    Clone,
    EndIo,
    EndIoResult,
    MappedDevice,
    MapResult,
    StatusType,
    Table,
    Target,
    parse_table,
    register,
    registered,
)
from backend.dm.args import ArgReader
from backend.dm.events import TableEvent, TableEventKind
from backend.errors import DeviceError, MessageError, StateError

CALLS: list[str] = []


class HoldTarget(Target):
    """Linear mapping plus switches for every behaviour the core must handle."""

    num_flush_bios = 1
    num_discard_bios = 1
    num_write_zeroes_bios = 1

    def ctr(self, args: list[str]) -> None:
        reader = ArgReader(args)
        self.dev_name = reader.next("<dev>")
        self.offset = reader.next_uint("<offset>")
        reader.finish()
        self.dev = self.get_device(self.dev_name, self.offset, self.length)
        self.hold = False
        self.hold_flush = False
        self.map_answer: MapResult | None = None
        self.end_io_answers: list[EndIoResult] = []
        self.flush_status: Status | None = None
        self.multipath_like = False
        self.presuspend_error: Exception | None = None
        self.postsuspend_error: Exception | None = None
        self.preresume_error: Exception | None = None
        self.held: list[Clone] = []
        self.flush_maps = 0
        self.seen_noflush_at_presuspend: bool | None = None
        self.presuspend_hook: Callable[[], Awaitable[None] | None] | None = None

    def _log(self, what: str) -> None:
        CALLS.append(f"{what}@{self.begin}")

    def map(self, clone: Clone) -> MapResult:
        if clone.op is Op.FLUSH:
            self.flush_maps += 1
            if self.flush_status is not None:
                clone.complete(self.flush_status)
                return MapResult.SUBMITTED
        if self.map_answer is not None:
            return self.map_answer
        if self.hold and (clone.op is not Op.FLUSH or self.hold_flush):
            self.held.append(clone)
            return MapResult.SUBMITTED
        clone.remap(self.dev, self.offset + clone.target_offset)
        return MapResult.REMAPPED

    def end_io(self, clone: Clone, status: Status) -> EndIoResult:
        if self.end_io_answers and clone.op is not Op.FLUSH:
            return self.end_io_answers.pop(0)
        return EndIo.DONE

    def release(self, status: Status | None = None) -> None:
        """Issue the held clones to the device, or end them with ``status``."""
        held, self.held = self.held, []
        for clone in held:
            if status is None:
                clone.remap(self.dev, self.offset + clone.target_offset)
                clone.issue()
            else:
                clone.complete(status)

    def presuspend(self) -> Awaitable[None] | None:
        self._log("presuspend")
        self.seen_noflush_at_presuspend = self.context.noflush_suspending()
        if self.multipath_like and self.held:
            # multipath, queue_if_no_path: pushback during noflush, else fail the queue.
            self.release(Status.REQUEUE if self.context.noflush_suspending() else Status.EIO)
        if self.presuspend_error is not None:
            raise self.presuspend_error
        return self.presuspend_hook() if self.presuspend_hook is not None else None

    def presuspend_undo(self) -> None:
        self._log("presuspend_undo")

    def postsuspend(self) -> Awaitable[None] | None:
        self._log("postsuspend")
        if self.postsuspend_error is not None:
            raise self.postsuspend_error
        return None

    def preresume(self) -> None:
        self._log("preresume")
        if self.preresume_error is not None:
            raise self.preresume_error

    def resume(self) -> None:
        self._log("resume")

    def dtr(self) -> None:
        self._log("dtr")

    def message(self, argv: list[str]) -> str:
        if argv[0] == "busy" and self.context.suspended():
            raise MessageError("suspended", Status.EBUSY)
        if argv[0] == "event":  # event KIND [DEV]: raise that table event
            self.context.table_event(TableEvent(TableEventKind(argv[1]), *argv[2:3]))
            return "raised"
        return f"{self.begin}:{' '.join(argv)}"

    def status(self, kind: StatusType) -> str:
        if kind is StatusType.TABLE:
            return f"{self.dev_name} {self.offset}"
        return f"held={len(self.held)}"


if "test-hold" not in registered():
    register("test-hold")(HoldTarget)


# --- requests -----------------------------------------------------------------------


class ValidatedBio(Bio):
    """A bio whose maker checked its buffers, as vhost/'s requests are: the core trusts
    them, and whole reads and writes may take the direct path (``Table.direct``)."""

    __slots__ = ()
    validated: ClassVar[bool] = True


@dataclass
class Request:
    """A bio plus its buffer and every completion it received."""

    bio: Bio
    buf: Any
    statuses: list[Status] = field(default_factory=list)

    @property
    def status(self) -> Status | None:
        assert len(self.statuses) <= 1, f"{self.bio} completed {len(self.statuses)} times"
        return self.statuses[0] if self.statuses else None

    @property
    def done(self) -> bool:
        return bool(self.statuses)

    def data(self) -> bytes:
        return iov_to_bytes(self.bio.iovecs)


class Requests:
    """Creates requests and records the order they complete in."""

    def __init__(self) -> None:
        self.order: list[tuple[str, Status]] = []

    def make(self, name: str, op: Op, sector: int = 0, nr_sectors: int = 0,
             fill: bytes = b"", *, preflush: bool = False, fua: bool = False) -> Request:
        size = nr_sectors * SECTOR_SIZE if op.has_data else 0
        buf = ctypes.create_string_buffer(max(size, 1))
        if fill:
            ctypes.memmove(buf, (fill * (size // len(fill) + 1))[:size], size)
        iovecs = [(ctypes.addressof(buf), size)] if size else []
        holder: list[Request] = []

        def end(status: Status) -> None:
            holder[0].statuses.append(status)
            self.order.append((name, status))

        req = Request(Bio(op, sector, nr_sectors, iovecs, end, preflush=preflush, fua=fua), buf)
        holder.append(req)
        return req

    def submit(self, md: MappedDevice, name: str, op: Op, sector: int = 0, nr_sectors: int = 0,
               fill: bytes = b"", **flags: bool) -> Request:
        req = self.make(name, op, sector, nr_sectors, fill, **flags)
        md.submit_bio(req.bio)
        return req


# --- devices and tables --------------------------------------------------------------


class Devices:
    """A name -> MemDevice resolver."""

    def __init__(self, **sizes_in_sectors: int) -> None:
        self.devs: dict[str, BlockDevice] = {
            name: MemDevice(name, n * SECTOR_SIZE) for name, n in sizes_in_sectors.items()
        }

    def __call__(self, name: str) -> BlockDevice:
        try:
            return self.devs[name]
        except KeyError:
            raise DeviceError(f"no device named {name!r}") from None

    def mem(self, name: str) -> MemDevice:
        dev = self.devs[name]
        assert isinstance(dev, MemDevice)
        return dev


def table(text: str, devices: Devices) -> Table:
    return parse_table(text, devices)


def targets(md: MappedDevice) -> list[HoldTarget]:
    """The live test-hold targets of ``md``."""
    assert md.live_table is not None
    return [t for t in md.live_table.targets if isinstance(t, HoldTarget)]


@types.coroutine
def loop_turn() -> Generator[None, None, None]:
    """Give the event loop one turn: callbacks already scheduled run, no time passes.

    This is exactly what asyncio's zero-second sleep does (a bare yield), named for what the
    tests use it for: stepping the loop deterministically, never waiting on a clock.
    """
    yield


async def settle(rounds: int = 20) -> None:
    """Let call_soon work run (a bounded number of loop turns; no time passes)."""
    for _ in range(rounds):
        await loop_turn()


def async_test(fn: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test on a fresh loop; the log of hook calls starts empty."""

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> None:
        CALLS.clear()
        asyncio.run(asyncio.wait_for(fn(*args, **kwargs), timeout=10))

    return run


__all__ = ["CALLS", "Devices", "HoldTarget", "Requests", "StateError", "ValidatedBio",
           "async_test", "settle", "table", "targets"]
