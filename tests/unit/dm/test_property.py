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
import contextlib
import ctypes
import functools
import itertools
import os
import random
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from hypothesis import HealthCheck, example, given, settings
from hypothesis import seed as hypothesis_seed
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

from .support import ValidatedBio, loop_turn

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
    """A MemDevice that completes 1..4 (sometimes 10..40) loop iterations later (random),
    so requests are reordered and stay in flight across suspend phases. ``on_submit``
    sees every request."""

    def __init__(self, name: str, size: int, rng: random.Random) -> None:
        super().__init__(name, size)
        self.rng = rng
        self.on_submit: Callable[[Op], None] | None = None

    def submit(self, op: Op, offset: int, length: int, iovecs: Sequence[IoVec],
               done: Completion) -> None:
        if self.on_submit is not None:
            self.on_submit(op)
        loop = asyncio.get_running_loop()
        args = (op, offset, length, list(iovecs), done)

        def later(hops: int) -> None:
            if hops:
                loop.call_soon(later, hops - 1)
            else:
                self._complete(*args)

        # now and then a slow one, so a suspend stays pending for a few steps and a
        # cancel can land on it with pushed-back I/O already parked
        later(self.rng.randint(1, 4) if self.rng.random() >= 0.1 else self.rng.randint(10, 40))


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
    """A REQUEUE of (part of) it met a cleared NOFLUSH_SUSPENDING flag: EIO is the rule."""
    must_fail: bool = False
    """It was mapped whole (not split) and asked for REQUEUE outside noflush: EIO, never
    OK."""
    stage_one_in: set[int] = field(default_factory=set)
    """Suspend attempts during which a split piece of it asked for REQUEUE (see
    Harness.note_requeue)."""
    candidates: list[set[int]] = field(default_factory=list)
    """READ: per sector, the values it may return."""
    racing: list[set[int]] = field(default_factory=list)
    """WRITE: per sector, values of overlapping writes in flight at the same time."""

    def covers(self, s: int) -> bool:
        return self.sector <= s < self.sector + self.nr

    def owns(self, address: int) -> bool:
        base = ctypes.addressof(self.buf)
        return base <= address < base + ctypes.sizeof(self.buf)

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
        self.attempt = 0
        """Number of the current (or last) suspend attempt."""
        self.interrupted_attempts: set[int] = set()
        self.dev.on_submit = self.device_submit

    def device_submit(self, op: Op) -> None:
        # Once suspend has returned nothing is in flight and nothing may start (I/O waits
        # on the deferred list, no flush work starts) until resume.
        if self.md.state is DeviceState.SUSPENDED:
            self.violations.append(f"{op.name} reached the device while suspended")

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
        """Which outcomes a REQUEUE allows for the requests it may belong to.

        Outside a noflush suspend a REQUEUE is EIO (seed 001). Inside one it is pushed
        back, and a pushed-back request is never failed by an interruption: it is
        reissued as the device unblocks. The exception is a *piece of a split request*:
        seed 003's stage one parks it on the requeue list whatever the flag says, and
        the flag is only looked at again in stage two, once the worker has rewound it.
        If the suspend is interrupted in between (the piece still counts as in flight,
        so the suspend is still waiting), stage two meets a cleared flag and the request
        gets EIO: in seed 001's words it "hadn't been returned at the time". The kernel
        does exactly this (dm_handle_requeue parks a first-stage io unconditionally; the
        second stage checks __noflush_suspending). So such a request may fail if this
        suspend attempt is interrupted. The core clears the flag and its worker may end
        the request before ``await task`` returns to the harness, so the verdict is not
        taken here but at completion, against the attempts the harness has cancelled
        (it records that before calling cancel()).

        A clone strictly inside the request is a piece of something split (the request
        itself, or a rewound piece of it); a clone covering the whole request never is,
        and then a REQUEUE outside noflush must end it with EIO.

        A clone with data points into its request's buffer, which names the request; a
        discard could be any outstanding discard it overlaps, so it only ever widens what
        those may do.
        """
        if clone.op is Op.FLUSH:
            return  # a requeued flush is retried or pushed back, never failed
        end = clone.target.begin + clone.target_offset + clone.nr_sectors
        start = clone.target.begin + clone.target_offset
        if clone.iovecs:
            owners = [r for r in self.outstanding if r.owns(clone.iovecs[0][0])]
            if len(owners) != 1:  # (an assert here would be caught by the core's map())
                self.violations.append(f"{clone} belongs to {[r.name for r in owners]}")
        else:
            owners = [r for r in self.outstanding
                      if r.op is clone.op and r.sector < end and start < r.sector + r.nr]
        for req in owners:
            whole = (start, end) == (req.sector, req.sector + req.nr)
            if not noflush:
                req.allow_eio = True
                req.must_fail |= whole and bool(clone.iovecs)
            elif not whole:
                req.stage_one_in.add(self.attempt)

    def may_fail(self, req: Req) -> bool:
        return req.allow_eio or bool(req.stage_one_in & self.interrupted_attempts)

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
        # Every other request as vhost/ makes them (buffers checked at the edge): on a
        # one-linear table those take the direct path, the rest the general one.
        kind = ValidatedBio if len(self.all) % 2 else Bio
        req.bio = kind(op, sector, nr, iovecs, functools.partial(self.completed, req),
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
        if req.must_fail and status is not Status.EIO:
            self.violations.append(f"{req.name} asked for REQUEUE outside noflush, got "
                                   f"{status.name}, not EIO")
        elif status is Status.EIO and not self.may_fail(req):
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
    "suspend": st.tuples(st.booleans(), st.booleans()),  # (noflush, wait until suspended)
    "cancel": st.integers(0, 3),  # loop iterations first: let the suspend get going
    "load": tables,
    "resume": st.none(),
    "yield": st.integers(1, 6),
}
# weights: half the steps are requests, a fifth are loop yields
steps = st.sampled_from(["io"] * 5 + ["yield"] * 2 + ["suspend", "cancel", "load", "resume"]
                        ).flatmap(lambda kind: st.tuples(st.just(kind), step_kinds[kind]))


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
            noflush, wait = arg
            h.attempt += 1
            suspend = asyncio.create_task(h.md.suspend(noflush=noflush))
            if wait:  # the steps up to the next resume meet a SUSPENDED device
                await suspend
        elif kind == "cancel" and suspend is not None and not suspend.done():
            for _ in range(arg):
                await loop_turn()
            if not suspend.done():
                # Recorded before cancel(): while we await the task the core clears the
                # flag, and its requeue worker may already fail a stage-one piece.
                h.interrupted_attempts.add(h.attempt)
                suspend.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await suspend
                suspend = None
        elif kind == "load":
            h.md.load(parse_table(h.table_text(*arg), h.resolve))
        elif kind == "resume" and suspend is not None:
            await suspend
            suspend = None
            await h.md.resume()
        elif kind == "yield":
            for _ in range(arg):
                await loop_turn()
    if suspend is not None:
        await suspend
    if h.md.state is DeviceState.SUSPENDED:
        await h.md.resume()
    for _ in range(10_000):
        if not h.outstanding:
            break
        await loop_turn()


# CI runs a fixed set of examples (derandomize, no example database): it never goes red
# on a case some earlier or luckier run happened to find. The fixed set catches each of
# the core breakages this test exists for (pushback never merged, a noflush REQUEUE
# turned into EIO, a REQUEUE completing OK, I/O not blocked while suspended). To hunt
# for new cases run it longer and/or elsewhere, e.g.
#   VUDM_HYPOTHESIS_EXAMPLES=2000 VUDM_HYPOTHESIS_SEED=7 pytest tests/unit/dm/test_property.py
# and turn whatever it finds into a named rule test (core bug) or a fixed model.
EXAMPLES = int(os.environ.get("VUDM_HYPOTHESIS_EXAMPLES", "200"))
SEED = os.environ.get("VUDM_HYPOTHESIS_SEED")


def exploring(test: Callable[..., None]) -> Callable[..., None]:
    """Apply VUDM_HYPOTHESIS_SEED (a seed overrides derandomize)."""
    return test if SEED is None else hypothesis_seed(int(SEED))(test)


@exploring
@settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None,
          print_blob=True, suppress_health_check=[HealthCheck.too_slow])
# Found by hypothesis (there with seed=1, before the device's slow completions changed
# how the rng is drawn): write 0+2 is split at sector 1; its piece 1+1 asks for REQUEUE in
# end_io during the noflush suspend, which is cancelled before the requeue worker runs
# stage two. EIO is right (see note_requeue); the model used to learn of the interruption
# only after the core had already ended the write.
@example(seed=37, probability=0.1, first=([1], [0, 1]),
         plan=[("io", ("write", 0, 1))] * 5 + [
             ("io", ("write", 0, 2)), ("suspend", (True, False)), ("io", ("write", 0, 1)),
             ("yield", 3), ("cancel", 0)])
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
