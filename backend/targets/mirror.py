"""mirror: ``<log_type> <#log_args> <log_args>... <#mirrors> {<dev> <offset>}...
[<#features> handle_errors]`` - dm-raid1.

Writes go to every leg, after the region they touch is marked dirty in the log (the log
is written and waited for: dirty_log.py). Reads go to one in-sync leg and fail over to
another on error. Regions out of sync are copied from the default leg to the others by
a background worker (one region at a time, like MAX_RECOVERY).

A write that failed on a leg, or that could not be marked because the dirty-log write
failed (seed 000), goes on the failures list; the worker decides (the kernel's
``do_failures``): with every leg dead it fails; without ``handle_errors`` it completes
(at least one leg has the data, the region goes out of sync); with ``handle_errors`` it
is *held* (``hold_bio``, the kernel's rule since 2.6.33) until userspace repairs the
mirror. Once a leg has failed, writes to out-of-sync regions are held too, so from the
first failure on every write waits. presuspend stops recovery and hands every held
write back with REQUEUE: the core pushes it back during a noflush suspend (a table
loaded before resume - a new log, or a table over the surviving leg - completes it)
and fails it with EIO otherwise.

The worker (the kernel's kmirrord) is one background task per target, started through
the target's context; everything else runs in I/O callbacks on the loop.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from backend.blockio import Op, Status
from backend.dm.clock import TaskHandle
from backend.dm.events import TableEvent, TableEventKind
from backend.dm.registry import register
from backend.dm.target import Clone, EndIo, EndIoResult, MapResult, StatusType, Target
from backend.errors import TableError
from backend.targets.dirty_log import create_dirty_log
from backend.targets.mirror_io import Leg, LegError, copy_region, fan_out
from backend.targets.region_hash import Region, RegionHash, RegionState

MAX_RECOVERY = 1
"""Regions recovered in parallel."""
MAX_MIRRORS = 9
"""DM_KCOPYD_MAX_REGIONS + 1."""
WORKER_SLICE = 0.002
"""Longest run of worker passes, in seconds, before the worker lets the loop run (and
rests as long)."""


@dataclass(eq=False)
class _Write:
    """clone.private of a write: its region (None for flush/discard) and whether the
    region's pending count includes it."""

    region: int | None
    counted: bool = False


@register("mirror")
class MirrorTarget(Target):
    """dm-raid1 with core and disk logs, handle_errors, and seed 000's log-failure rule."""

    num_flush_bios = 1
    num_discard_bios = 1

    # --- construction ------------------------------------------------------------------

    def ctr(self, args: list[str]) -> None:
        """mirror_ctr: the kernel's checks in its order and words."""
        if len(args) < 2:
            raise TableError("mirror: Insufficient mirror log arguments")
        if not args[1].isdigit():
            raise TableError("mirror: Invalid mirror log argument count")
        used = 2 + int(args[1])
        if len(args) < used:
            raise TableError("mirror: Insufficient mirror log arguments")
        self.dirty_log = create_dirty_log(args[0], args[2:used], self.length, self.get_device,
                                    self._log_device_failed)
        rest = args[used:]
        if not rest or not rest[0].isdigit() or not 2 <= int(rest[0]) <= MAX_MIRRORS:
            raise TableError("mirror: Invalid number of mirrors")
        count, rest = int(rest[0]), rest[1:]
        if len(rest) < 2 * count:
            raise TableError("mirror: Too few mirror arguments")
        self.legs: list[Leg] = []
        for name, offset in zip(rest[0:2 * count:2], rest[1:2 * count:2], strict=True):
            if not offset.isdigit():
                raise TableError(f"mirror: Invalid offset {offset!r}")
            dev = self.get_device(name, int(offset), self.length)
            self.legs.append(Leg(name, int(offset), dev))
        rest = rest[2 * count:]
        self.handle_errors = False
        self.keep_log = False
        """Accepted and printed back; its rule (dm-raid1 keeps a failed log's writes
        failing instead of dropping the log) is not modelled: docs/kernel-differences.md."""
        if rest:
            if not rest[0].isdigit():
                raise TableError("mirror: Invalid number of features")
            nfeatures, rest = int(rest[0]), rest[1:]
            if nfeatures > len(rest):
                raise TableError("mirror: Not enough arguments to support feature count")
            for word in rest[:nfeatures]:
                if word == "handle_errors":
                    self.handle_errors = True
                elif word == "keep_log":
                    self.keep_log = True
                else:
                    raise TableError(f"mirror: Unrecognised feature requested: {word!r}")
            rest = rest[nfeatures:]
            if self.keep_log and not self.handle_errors:
                raise TableError("mirror: keep_log feature requires the handle_errors feature")
        if rest:
            raise TableError("mirror: Too many mirror arguments")
        self.max_io_len = self.dirty_log.region_size  # a clone never spans two regions
        self.nr_regions = self.dirty_log.region_count
        self.rh = RegionHash(self.dirty_log, self._wake, self._dispatch_delayed, MAX_RECOVERY)
        self.default = 0
        self.reads: list[Clone] = []
        self.writes: list[Clone] = []
        self.failures: list[Clone] = []
        self.holds: list[Clone] = []
        """Writes held by ``_hold`` until a suspend hands them back (ms->holds)."""
        self.in_sync = False
        self.log_failure = False
        self.leg_failure = False
        self.suspending = False
        self.parked = 0
        """Evidence: writes held (parked via the failures list: seed 000, hold_bio)."""
        self.parked_requeued = 0
        """Evidence: held writes handed back during a noflush suspend (pushed back)."""
        self.parked_failed = 0
        """Evidence: held writes handed back outside one (the core fails them)."""
        self.recoveries = 0
        """Evidence: regions recovered (copied to every leg)."""
        self._log_resumed = True  # resume() asks the worker to resume the log first
        self._wakeup = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task: TaskHandle | None = None

    def dtr(self) -> None:
        if self._task is not None:
            self._task.cancel()
        held = self.reads + self.writes + self.failures + self.holds
        self.reads, self.writes, self.failures, self.holds = [], [], [], []
        for region in self.rh.regions.values():
            held += region.delayed
            region.delayed = []
        for clone in held:  # nothing should be left once suspended; never leak an I/O
            clone.complete(Status.EIO)

    # --- legs ----------------------------------------------------------------------------

    def _choose_mirror(self) -> Leg | None:
        """choose_mirror: the default leg, else the nearest one before it without errors."""
        for step in range(len(self.legs)):
            leg = self.legs[(self.default - step) % len(self.legs)]
            if not leg.error_count:
                return leg
        return None

    def _fail_leg(self, leg: Leg, kind: LegError) -> None:
        """fail_mirror: count the error; the first of each kind is logged and, with
        handle_errors, raises a table event and moves the default leg off it. Any failure
        makes later writes to out-of-sync regions wait with the others (leg_failure)."""
        self.leg_failure = True
        leg.error_count += 1
        if kind in leg.errors:
            return
        leg.errors.add(kind)
        self.log.info("mirror leg %s failed (%s error)", leg.name, kind.name.lower())
        if not self.handle_errors:
            return
        if leg is self.legs[self.default]:
            if not self.in_sync:
                self.log.error("Primary mirror (%s) failed while out-of-sync: Reads may fail.",
                               leg.name)
            else:
                valid = [i for i, other in enumerate(self.legs) if not other.error_count]
                if valid:
                    self.default = valid[0]
                else:
                    self.log.warning("All sides of mirror have failed.")
        self.context.table_event(TableEvent(TableEventKind.LEG_FAILED, leg.name,
                                            kind.name.lower()))

    def _log_device_failed(self, event: TableEvent) -> None:
        self.log.info("%s", event.reason)
        self.context.table_event(event)

    @staticmethod
    def _remap(clone: Clone, leg: Leg) -> None:
        clone.private = leg
        clone.remap(leg.dev, leg.offset + clone.target_offset)

    # --- I/O path ----------------------------------------------------------------------

    def map(self, clone: Clone) -> MapResult:
        region = self.rh.region_of(clone.target_offset)
        if clone.op is not Op.READ:
            clone.private = _Write(region if clone.op is Op.WRITE else None)
            self._queue(self.writes, clone)
            return MapResult.SUBMITTED
        if not self.dirty_log.in_sync(region):
            clone.private = None
            self._queue(self.reads, clone)
            return MapResult.SUBMITTED
        leg = self._choose_mirror()
        if leg is None:
            return MapResult.KILL
        self._remap(clone, leg)
        return MapResult.REMAPPED

    def end_io(self, clone: Clone, status: Status) -> EndIoResult:
        """mirror_end_io: writes release their region; a failed read is retried on
        another leg while one is usable."""
        if isinstance(clone.private, _Write):
            write, clone.private = clone.private, None
            if write.counted and write.region is not None:
                self.rh.dec(write.region)
            return EndIo.DONE
        leg = clone.private
        if status in (Status.OK, Status.EOPNOTSUPP, Status.REQUEUE) or not isinstance(leg, Leg):
            return EndIo.DONE
        self.log.error("Mirror read failed from %s. Trying alternative device.", leg.name)
        self._fail_leg(leg, LegError.READ)
        region = self.rh.region_of(clone.target_offset)
        if not self.legs[self.default].error_count or (
                self.dirty_log.in_sync(region) and self._choose_mirror() is not None):
            clone.private = None
            self._queue(self.reads, clone)
            return EndIo.INCOMPLETE
        self.log.error("All replicated volumes dead, failing I/O")
        return EndIo.DONE

    # --- the worker (kmirrord) -----------------------------------------------------------

    def _queue(self, queue: list[Clone], clone: Clone) -> None:
        queue.append(clone)
        self._wake()

    def _dispatch_delayed(self, clones: list[Clone]) -> None:
        """The region hash releases writes that waited for a recovery."""
        self.writes.extend(clones)
        if clones:
            self._wake()

    def _wake(self) -> None:
        self._wakeup.set()
        if self._task is None or self._task.done():
            work = self._run()
            try:
                self._task = self.context.start(work, f"kmirrord {self.context.device_name}")
            except RuntimeError:
                work.close()  # no loop yet: the first wake from the loop starts the worker

    async def _run(self) -> None:
        now = self.context.now
        slice_start = now()
        while True:
            if not self._wakeup.is_set():
                await self._wakeup.wait()
                slice_start = now()
            self._wakeup.clear()
            try:
                await self._do_mirror()
            except Exception:  # a bug must not stop the worker (held I/O would hang)
                self.log.exception("mirror worker pass failed")
            if now() - slice_start >= WORKER_SLICE:
                # Legs that complete at once (zero, a stacked device) wake the worker
                # again before it ever waits: a first resync of 2^19 regions would hold
                # the loop for seconds. Between slices everything else runs, and as
                # long again the worker rests (kcopyd throttles too): a daemon that never
                # sleeps is the last to be scheduled on a busy machine.
                await self.context.sleep(WORKER_SLICE)
                slice_start = now()

    async def _do_mirror(self) -> None:
        """do_mirror: one pass over everything queued."""
        async with self._lock:
            if not self._log_resumed:
                self._log_resumed = True
                if not await self.dirty_log.resume():
                    self.log.warning("log resume failed")
            reads, self.reads = self.reads, []
            writes, self.writes = self.writes, []
            self.rh.update_states(self.handle_errors)
            self._do_recovery()
            self._do_reads(reads)
            await self._do_writes(writes)
            self._do_failures()

    def _do_recovery(self) -> None:
        self.rh.recovery_prepare()
        while (region := self.rh.recovery_start()) is not None:
            self._recover(region)
        if not self.in_sync and self.dirty_log.sync_count == self.nr_regions:
            self.in_sync = True
            self.log.info("mirror in sync")
            self.context.table_event(TableEvent(TableEventKind.IN_SYNC))

    def _recover(self, region: Region) -> None:
        """recover: copy the region from the default leg to all the others."""
        start = region.key * self.dirty_log.region_size
        count = min(self.dirty_log.region_size, self.length - start)
        source = self.legs[self.default]
        dests = [leg for leg in self.legs if leg is not source]

        def done(read_failed: bool, failed: set[int]) -> None:
            if read_failed:
                self.log.error("Unable to read primary mirror during recovery")
                self._fail_leg(source, LegError.SYNC)
            if not self.handle_errors:
                failed = set()  # DM_KCOPYD_IGNORE_ERROR
            for index in sorted(failed):
                self._fail_leg(dests[index], LegError.SYNC)
            if not (read_failed or failed):
                self.recoveries += 1
            self.rh.recovery_end(region, not (read_failed or failed))

        copy_region(source, dests, start, count, done)

    def _do_reads(self, reads: list[Clone]) -> None:
        for clone in reads:
            leg: Leg | None = self.legs[self.default]
            state = self.rh.get_state(self.rh.region_of(clone.target_offset))
            if state in (RegionState.CLEAN, RegionState.DIRTY):
                leg = self._choose_mirror()  # only an in-sync region may use any leg
            elif leg is not None and leg.error_count:
                leg = None
            if leg is None:
                clone.private = None
                clone.complete(Status.EIO)
            else:
                self._remap(clone, leg)
                clone.issue()

    async def _do_writes(self, writes: list[Clone]) -> None:
        """do_writes: mark regions, write the log and wait, then dispatch by state."""
        if not writes:
            return
        sync: list[Clone] = []
        nosync: list[Clone] = []
        for clone in writes:
            write: _Write = clone.private
            state = RegionState.CLEAN if write.region is None else self.rh.get_state(write.region)
            if state is RegionState.RECOVERING:
                assert write.region is not None
                self.rh.delay(clone, write.region)
                continue
            (nosync if state is RegionState.NOSYNC else sync).append(clone)
            if write.region is not None:
                self.rh.inc(write.region)
                write.counted = True
        if not await self.rh.flush() and not self.log_failure:
            # Sticky until the table is replaced: it needs the user to act.
            self.log_failure = True
            self.log.info("dirty log write failed; writes wait for a suspend")
        if self.log_failure and self.handle_errors:
            self.failures.extend(sync)  # seed 000: not attempted, held until a suspend
        else:
            for clone in sync:
                self._do_write(clone)
        for clone in nosync:
            if self.leg_failure and self.handle_errors:
                self.failures.append(clone)  # the user must repair the mirror first
                continue
            leg = self.legs[self.default]  # NOSYNC: the default leg only
            clone.remap(leg.dev, leg.offset + clone.target_offset)
            clone.issue()

    def _do_write(self, clone: Clone) -> None:
        def done(failed: set[int]) -> None:
            self._write_callback(clone, failed)

        fan_out(self.legs, clone.op, clone.target_offset, clone.nr_sectors, clone.iovecs, done,
                fua=clone.fua)

    def _write_callback(self, clone: Clone, failed: set[int]) -> None:
        """write_callback: a write that failed on any leg goes to the worker's failures
        list, which decides its fate (do_failures)."""
        if not failed:
            clone.complete(Status.OK)
            return
        for index in sorted(failed):
            self._fail_leg(self.legs[index], LegError.WRITE)
        self._queue(self.failures, clone)

    def _do_failures(self) -> None:
        """do_failures: the region goes out of sync (unless the log failed: it cannot be
        marked); with every leg dead the write fails; with handle_errors it is held for
        the user to repair the mirror; without, it completes (one leg has the data)."""
        failures, self.failures = self.failures, []
        for clone in failures:
            write: _Write = clone.private
            if not self.log_failure:
                self.in_sync = False
                if write.region is not None:
                    self.rh.mark_nosync(write.region)
            if not any(not leg.error_count for leg in self.legs):
                self.log.error("All replicated volumes dead, failing I/O")
                clone.complete(Status.EIO)
            elif self.handle_errors:
                self._hold(clone)
            else:
                clone.complete(Status.OK)

    def _hold(self, clone: Clone) -> None:
        """hold_bio: keep the write until a suspend; once presuspend has run, hand it
        back with REQUEUE. The core decides what that means (seed 001): pushback during
        a noflush suspend, EIO during a flush suspend - and EIO after an interrupted
        one, as the kernel's mirror keeps ms->suspend set until resume."""
        if self.suspending:
            if self.context.noflush_suspending():
                self.parked_requeued += 1
            else:
                self.parked_failed += 1
            clone.complete(Status.REQUEUE)
            return
        self.parked += 1
        self.holds.append(clone)

    # --- suspend / resume ----------------------------------------------------------------

    async def presuspend(self) -> None:
        """mirror_presuspend: hand held writes back (from now on nothing is held), stop
        recovery and wait for it, then let the worker finish what it has
        (flush_workqueue): writes it fails now are handed back too."""
        self.suspending = True
        holds, self.holds = self.holds, []
        for clone in holds:
            self._hold(clone)
        self.rh.stop_recovery()
        await self.rh.wait_recovery_idle()
        await self._do_mirror()

    def presuspend_undo(self) -> None:
        """An interrupted suspend: recovery restarts. ``suspending`` stays set until
        resume, as the kernel's ms->suspend does (dm-raid1 has no presuspend_undo): a
        write held from now on is handed back and fails, not held for ever."""
        self.rh.start_recovery()

    async def postsuspend(self) -> None:
        if not await self.dirty_log.postsuspend():
            self.log.warning("log postsuspend failed")

    def resume(self) -> None:
        self.suspending = False
        self._log_resumed = False
        self.rh.start_recovery()

    # --- introspection -------------------------------------------------------------------

    def stats(self) -> dict[str, object]:
        """Evidence: writes held and what became of them, regions recovered, leg errors."""
        return {
            "parked": self.parked,
            "parked-requeued": self.parked_requeued,
            "parked-failed": self.parked_failed,
            "recoveries": self.recoveries,
            "leg-errors": sum(leg.error_count for leg in self.legs),
        }

    def status(self, kind: StatusType) -> str:
        if kind is StatusType.INFO:
            names = " ".join(leg.name for leg in self.legs)
            health = "".join(leg.status_char() for leg in self.legs)
            return (f"{len(self.legs)} {names} {self.dirty_log.sync_count}/{self.nr_regions} 1 "
                    f"{health} {self.dirty_log.status(kind)}")
        legs = " ".join(f"{leg.name} {leg.offset}" for leg in self.legs)
        words = [w for w, on in (("handle_errors", self.handle_errors),
                                 ("keep_log", self.keep_log)) if on]
        features = f" {len(words)} {' '.join(words)}" if words else ""
        return f"{self.dirty_log.status(kind)} {len(self.legs)} {legs}{features}"
