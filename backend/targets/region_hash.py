"""The mirror's region hash (dm-region-hash.c): per-region state, pending writes, recovery.

A region not in the hash has the state its log says (CLEAN if in sync, else NOSYNC). A
write makes its region DIRTY (the log marks it) until its pending count drops to zero,
when it goes back to CLEAN and ``update_states`` tells the log. Recovery takes a region
the log reports out of sync, marks it RECOVERING, waits until its pending writes have
finished ("quiesced"), lets the mirror copy it, then records the result in the log and
releases the writes that arrived meanwhile (they were delayed on the region).
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable
from dataclasses import dataclass, field

from backend.dm.target import Clone
from backend.targets.dirty_log import CoreLog


class RegionState(enum.Enum):
    CLEAN = "clean"
    DIRTY = "dirty"
    NOSYNC = "nosync"
    RECOVERING = "recovering"


@dataclass(eq=False)
class Region:
    key: int
    state: RegionState
    pending: int = 0
    delayed: list[Clone] = field(default_factory=list)
    """Writes that arrived while the region was recovering."""


class RegionHash:
    """Region states for one mirror; ``wake`` asks the mirror's worker to run."""

    def __init__(self, log: CoreLog, wake: Callable[[], None],
                 dispatch: Callable[[list[Clone]], None], max_recovery: int = 1) -> None:
        self.log = log
        self.region_size = log.region_size
        self._wake = wake
        self._dispatch = dispatch
        self.max_recovery = max_recovery
        self.regions: dict[int, Region] = {}
        self.clean: list[Region] = []
        self.quiesced: list[Region] = []
        self.recovered: list[tuple[Region, bool]] = []
        self.recovery_in_flight = 0
        self.recovery_stopped = False
        self._recovery_idle: asyncio.Event | None = None

    def region_of(self, target_offset: int) -> int:
        return target_offset // self.region_size

    def _find(self, key: int) -> Region:
        """__rh_find / __rh_alloc: a new entry takes its state from the log."""
        region = self.regions.get(key)
        if region is None:
            state = RegionState.CLEAN if self.log.in_sync(key) else RegionState.NOSYNC
            region = self.regions[key] = Region(key, state)
        return region

    def get_state(self, key: int) -> RegionState:
        region = self.regions.get(key)
        if region is not None:
            return region.state
        return RegionState.CLEAN if self.log.in_sync(key) else RegionState.NOSYNC

    # --- writes ----------------------------------------------------------------------

    def inc(self, key: int) -> None:
        """__rh_inc: one more write in flight; a CLEAN region becomes DIRTY (log marked)."""
        region = self._find(key)
        region.pending += 1
        if region.state is RegionState.CLEAN:
            region.state = RegionState.DIRTY
            if region in self.clean:
                self.clean.remove(region)
            self.log.mark_region(key)

    def dec(self, key: int) -> None:
        """dm_rh_dec: the last write done: DIRTY -> CLEAN, RECOVERING -> quiesced."""
        region = self.regions[key]
        region.pending -= 1
        if region.pending:
            return
        if region.state is RegionState.RECOVERING:
            self.quiesced.append(region)
        elif region.state is RegionState.DIRTY:
            region.state = RegionState.CLEAN
            self.clean.append(region)
        self._wake()  # NOSYNC: stays in the hash until recovered or reloaded

    def delay(self, clone: Clone, key: int) -> None:
        """dm_rh_delay: hold a write until the region's recovery is over."""
        self._find(key).delayed.append(clone)

    def mark_nosync(self, key: int) -> None:
        """dm_rh_mark_nosync: a write failed on a leg; the region must be resynced."""
        self.log.set_region_sync(key, False)
        region = self._find(key)
        recovering = region.state is RegionState.RECOVERING
        region.state = RegionState.NOSYNC
        if recovering:
            if region in self.quiesced:
                self.quiesced.remove(region)
            self._complete_recovery(region, False)

    async def flush(self) -> bool:
        """dm_rh_flush: write the log (marks made by ``inc``) before the writes go."""
        return await self.log.flush()

    # --- the worker's passes -----------------------------------------------------------

    def update_states(self, errors_handled: bool) -> None:
        """dm_rh_update_states: tell the log about clean and recovered regions."""
        clean, self.clean = self.clean, []
        for region in clean:
            self.log.clear_region(region.key)
            del self.regions[region.key]
        recovered, self.recovered = self.recovered, []
        for region, success in recovered:
            if success:
                self.log.clear_region(region.key)
            # A failed recovery stays out of sync when errors are handled.
            self._complete_recovery(region, success or not errors_handled)
            self.regions.pop(region.key, None)

    def _complete_recovery(self, region: Region, in_sync: bool) -> None:
        """complete_resync_work: release delayed writes, record the sync state."""
        delayed, region.delayed = region.delayed, []
        self._dispatch(delayed)
        self.log.set_region_sync(region.key, in_sync)
        self.recovery_in_flight -= 1
        if not self.recovery_in_flight and self._recovery_idle is not None:
            self._recovery_idle.set()

    # --- recovery ----------------------------------------------------------------------

    def recovery_prepare(self) -> None:
        """dm_rh_recovery_prepare: start quiescing out-of-sync regions, up to the limit."""
        while not self.recovery_stopped and self.recovery_in_flight < self.max_recovery:
            key = self.log.get_resync_work()
            if key is None:
                return
            self.recovery_in_flight += 1
            region = self._find(key)
            region.state = RegionState.RECOVERING
            if region in self.clean:
                self.clean.remove(region)
            if not region.pending:
                self.quiesced.append(region)

    def recovery_start(self) -> Region | None:
        """dm_rh_recovery_start: a quiesced region to copy, if any."""
        return self.quiesced.pop(0) if self.quiesced else None

    def recovery_end(self, region: Region, success: bool) -> None:
        """dm_rh_recovery_end: the copy finished; the worker records it."""
        self.recovered.append((region, success))
        self._wake()

    def stop_recovery(self) -> None:
        self.recovery_stopped = True

    def start_recovery(self) -> None:
        self.recovery_stopped = False
        self._wake()

    async def wait_recovery_idle(self) -> None:
        """Return when no region is being recovered (regions already started finish)."""
        while self.recovery_in_flight:
            self._recovery_idle = asyncio.Event()
            try:
                await self._recovery_idle.wait()
            finally:
                self._recovery_idle = None
