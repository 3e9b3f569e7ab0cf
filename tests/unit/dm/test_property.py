"""Property: whatever the tables, requests and suspend/load/resume interleavings, every
request completes exactly once, reads see the last completed write, nothing completes
while suspended, nothing stays queued after resume, and EIO only comes from a REQUEUE
the rules turn into EIO.

Tables are random cuts of one 64-sector MemDevice (identity mapped, so data survives
reloads), mixing ``linear`` with ``test-randq``, which answers REQUEUE from map and
end_io at random. The device completes a few loop iterations later, so I/O is in flight
across suspends; interleavings come from explicit loop yields, never from time.
"""

from __future__ import annotations

import asyncio
import ctypes
import functools
import itertools
import random
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import backend.targets  # noqa: F401  (registers linear)
from backend.blockio import SECTOR_SIZE, Bio, Completion, IoVec, Op, Status, iov_to_bytes
from backend.devices.mem import MemDevice
from backend.dm import (
    Clone,
    DeviceState,
    EndIo,
    EndIoResult,
    MappedDevice,
    MapResult,
    StatusType,
    Target,
    parse_table,
    register,
    registered,
)
from backend.dm.args import ArgReader

SIZE = 64


class RandomRequeueTarget(Target):
    """``test-randq <dev> <offset> <max_io_len>``: linear, with random REQUEUE answers."""

    num_flush_bios = 1
    num_discard_bios = 1
    num_write_zeroes_bios = 1
    harness: ClassVar[Harness | None] = None

    def ctr(self, args: list[str]) -> None:
        reader = ArgReader(args)
        self.dev_name = reader.next("<dev>")
        self.offset = reader.next_uint("<offset>")
        self.max_io_len = reader.next_uint("<max_io_len>")
        reader.finish()
        self.dev = self.get_device(self.dev_name, self.offset, self.length)

    def _requeue(self, clone: Clone) -> bool:
        h = self.harness
        if h is None or h.rng.random() >= h.requeue_probability:
            return False
        h.note_requeue(clone, self.context.noflush_suspending())
        return True

    def map(self, clone: Clone) -> MapResult:
        if self._requeue(clone):
            return MapResult.REQUEUE
        clone.remap(self.dev, self.offset + clone.target_offset)
        return MapResult.REMAPPED

    def end_io(self, clone: Clone, status: Status) -> EndIoResult:
        return EndIo.REQUEUE if status is Status.OK and self._requeue(clone) else EndIo.DONE

    def status(self, kind: StatusType) -> str:
        if kind is StatusType.TABLE:
            return f"{self.dev_name} {self.offset} {self.max_io_len}"
        return ""


if "test-randq" not in registered():
    register("test-randq")(RandomRequeueTarget)


class JitteryMemDevice(MemDevice):
    """A MemDevice that completes 1..4 loop iterations later (random), so requests are
    reordered and stay in flight across suspend phases."""

    def __init__(self, name: str, size: int, rng: random.Random) -> None:
        super().__init__(name, size)
        self.rng = rng

    def submit(self, op: Op, offset: int, length: int, iovecs: Sequence[IoVec],
               done: Completion) -> None:
        loop = asyncio.get_running_loop()
        args = (op, offset, length, list(iovecs), done)

        def later(hops: int) -> None:
            if hops:
                loop.call_soon(later, hops - 1)
            else:
                self._complete(*args)

        later(self.rng.randint(1, 4))


def sector_bytes(tag: int) -> bytes:
    return struct.pack("<Q", tag) * (SECTOR_SIZE // 8)


@dataclass
class Req:
    name: str
    op: Op
    sector: int
    nr: int
    tag: int
    buf: Any
    bio: Bio | None = None
    statuses: list[Status] = field(default_factory=list)
    allow_eio: bool = False
    pushed_back: bool = False
    candidates: list[set[int]] = field(default_factory=list)
    """READ: per sector, the values it may return."""
    racing: list[set[int]] = field(default_factory=list)
    """WRITE: per sector, values of overlapping writes in flight at the same time."""

    def covers(self, s: int) -> bool:
        return self.sector <= s < self.sector + self.nr

    def writes(self) -> bool:
        return self.op in (Op.WRITE, Op.DISCARD, Op.WRITE_ZEROES)

    def tag_at(self, s: int) -> int:
        return 0 if self.op is not Op.WRITE else self.tag * 1000 + s


class Harness:
    def __init__(self, rng: random.Random, requeue_probability: float) -> None:
        self.rng = rng
        self.requeue_probability = requeue_probability
        self.dev = JitteryMemDevice("backing", SIZE * SECTOR_SIZE, rng)
        self.md = MappedDevice("prop")
        self.committed: list[set[int]] = [{0} for _ in range(SIZE)]
        self.outstanding: list[Req] = []
        self.all: list[Req] = []
        self.violations: list[str] = []
        self.counter = 0

    def resolve(self, name: str) -> MemDevice:
        return self.dev

    def table_text(self, cuts: list[int], kinds: list[int]) -> str:
        bounds = [0, *sorted(set(cuts)), SIZE]
        lines = []
        for i, (lo, hi) in enumerate(itertools.pairwise(bounds)):
            kind = kinds[i % len(kinds)] if kinds else 0
            if kind == 0:
                lines.append(f"{lo} {hi - lo} linear backing {lo}")
            else:
                lines.append(f"{lo} {hi - lo} test-randq backing {lo} {(0, 3, 8)[kind - 1]}")
        return "\n".join(lines)

    def note_requeue(self, clone: Clone, noflush: bool) -> None:
        if clone.op is Op.FLUSH:
            return  # a requeued flush is retried or pushed back, never failed
        end = clone.target.begin + clone.target_offset + clone.nr_sectors
        start = clone.target.begin + clone.target_offset
        for req in self.outstanding:
            if req.op is clone.op and req.sector < end and start < req.sector + req.nr:
                if noflush:
                    req.pushed_back = True
                else:
                    req.allow_eio = True

    def interrupted(self) -> None:
        # stage two of a piece requeued before the interruption meets a cleared flag: EIO
        for req in self.outstanding:
            if req.pushed_back:
                req.allow_eio = True

    def submit(self, op: Op, sector: int, nr: int, preflush: bool = False) -> None:
        self.counter += 1
        size = nr * SECTOR_SIZE if op.has_data else 0
        buf = ctypes.create_string_buffer(max(size, 1))
        req = Req(f"{op.name}#{self.counter}", op, sector, nr, self.counter, buf)
        if op is Op.WRITE:
            data = b"".join(sector_bytes(req.tag_at(s)) for s in range(sector, sector + nr))
            ctypes.memmove(buf, data, size)
        req.racing = [set() for _ in range(nr)]
        for other in self.outstanding:
            lo, hi = max(sector, other.sector), min(sector + nr, other.sector + other.nr)
            for s in range(lo, hi):
                if req.writes() and other.op is Op.READ:  # a racing write is a possible read
                    other.candidates[s - other.sector].add(req.tag_at(s))
                if req.writes() and other.writes():  # racing writes land in any order
                    other.racing[s - other.sector].add(req.tag_at(s))
                    req.racing[s - sector].add(other.tag_at(s))
        if op is Op.READ:
            req.candidates = [self.possible(s) for s in range(sector, sector + nr)]
        iovecs = [(ctypes.addressof(buf), size)] if size else []
        req.bio = Bio(op, sector, nr, iovecs, functools.partial(self.completed, req),
                      preflush=preflush)
        self.outstanding.append(req)
        self.all.append(req)
        self.md.submit_bio(req.bio)

    def possible(self, s: int) -> set[int]:
        tags = set(self.committed[s])
        tags.update(w.tag_at(s) for w in self.outstanding if w.writes() and w.covers(s))
        return tags

    def completed(self, req: Req, status: Status) -> None:
        req.statuses.append(status)
        if len(req.statuses) > 1:
            self.violations.append(f"{req.name} completed twice: {req.statuses}")
            return
        if self.md.state is DeviceState.SUSPENDED:
            self.violations.append(f"{req.name} completed ({status.name}) while suspended")
        self.outstanding.remove(req)
        if status is Status.EIO and not req.allow_eio:
            self.violations.append(f"{req.name} got EIO without a REQUEUE outside noflush")
        elif status not in (Status.OK, Status.EIO):
            self.violations.append(f"{req.name} got {status.name}")
        if req.writes():
            for s in range(req.sector, req.sector + req.nr):
                if status is not Status.OK:  # a failed write may have landed, or not
                    self.committed[s].add(req.tag_at(s))
                else:
                    self.committed[s] = {req.tag_at(s)}
                self.committed[s].update(req.racing[s - req.sector])
        if req.op is Op.READ and status is Status.OK:
            assert req.bio is not None
            data = iov_to_bytes(req.bio.iovecs)
            for i in range(req.nr):
                chunk = data[i * SECTOR_SIZE:(i + 1) * SECTOR_SIZE]
                tag = struct.unpack_from("<Q", chunk)[0]
                if chunk != sector_bytes(tag) or tag not in req.candidates[i]:
                    self.violations.append(
                        f"{req.name} sector {req.sector + i}: read {tag}, "
                        f"expected one of {sorted(req.candidates[i])}")


requests = st.tuples(st.sampled_from(["write", "read", "discard", "flush", "pwrite"]),
                     st.integers(0, SIZE - 1), st.integers(1, 24))
tables = st.tuples(st.lists(st.integers(1, SIZE - 1), max_size=4),
                   st.lists(st.integers(0, 3), min_size=1, max_size=5))
step_kinds: dict[str, st.SearchStrategy[Any]] = {
    "io": requests,
    "suspend": st.booleans(),
    "cancel": st.none(),
    "load": tables,
    "resume": st.none(),
    "yield": st.integers(1, 6),
}
# weights: half the steps are requests, a fifth are loop yields
steps = st.sampled_from(["io"] * 5 + ["yield"] * 2 + ["suspend", "cancel", "load", "resume"]
                        ).flatmap(lambda kind: step_kinds[kind].map(lambda arg: (kind, arg)))


async def run(h: Harness, first: tuple[list[int], list[int]],
              plan: list[tuple[str, Any]]) -> None:
    h.md.create(parse_table(h.table_text(*first), h.resolve))
    suspend: asyncio.Task[None] | None = None
    for kind, arg in plan:
        if kind == "io":
            name, sector, nr = arg
            nr = min(nr, SIZE - sector)
            op = {"write": Op.WRITE, "read": Op.READ, "discard": Op.DISCARD,
                  "flush": Op.FLUSH, "pwrite": Op.WRITE}[name]
            h.submit(op, 0 if op is Op.FLUSH else sector, 0 if op is Op.FLUSH else nr,
                     preflush=name == "pwrite")
        elif kind == "suspend" and suspend is None and h.md.state is DeviceState.ACTIVE:
            suspend = asyncio.create_task(h.md.suspend(noflush=arg))
        elif kind == "cancel" and suspend is not None and not suspend.done():
            suspend.cancel()
            try:
                await suspend
            except asyncio.CancelledError:
                h.interrupted()
            suspend = None
        elif kind == "load":
            h.md.load(parse_table(h.table_text(*arg), h.resolve))
        elif kind == "resume" and suspend is not None:
            await suspend
            suspend = None
            await h.md.resume()
        elif kind == "yield":
            for _ in range(arg):
                await asyncio.sleep(0)
    if suspend is not None:
        await suspend
    if h.md.state is DeviceState.SUSPENDED:
        await h.md.resume()
    for _ in range(10_000):
        if not h.outstanding:
            break
        await asyncio.sleep(0)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    probability=st.sampled_from([0.0, 0.1, 0.3]),
    first=tables,
    plan=st.lists(steps, min_size=10, max_size=40),
)
def test_random_interleavings_keep_dm_semantics(
    seed: int, probability: float, first: tuple[list[int], list[int]],
    plan: list[tuple[str, Any]],
) -> None:
    h = Harness(random.Random(seed), probability)
    RandomRequeueTarget.harness = h
    try:
        asyncio.run(asyncio.wait_for(run(h, first, plan), timeout=20))
    finally:
        RandomRequeueTarget.harness = None
    assert h.violations == []
    stuck = [r.name for r in h.all if len(r.statuses) != 1]
    assert stuck == [], f"not completed exactly once: {stuck}"
    info = h.md.info()
    assert (info.state, info.in_flight, info.deferred) == (DeviceState.ACTIVE, 0, 0)
