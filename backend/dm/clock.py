"""Time and scheduling for the dm core and its targets: one clock, handles that cancel.

Targets never reach for the event loop themselves: they ask their TargetContext, which
asks a :class:`Clock`. The daemon's clock is :data:`LOOP_CLOCK` (the running event loop:
monotonic time, loop callbacks, tasks); unit tests give a table a manual clock that
moves and fires its timers only when the test says so (tests/unit/fake_context.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any, Protocol


class Handle(Protocol):
    """A scheduled callback; ``cancel()`` keeps it from running (idempotent)."""

    def cancel(self) -> object: ...


class TaskHandle(Handle, Protocol):
    """Background work started with ``Clock.start``."""

    def done(self) -> bool: ...


class Clock(Protocol):
    """Where time, callbacks and background work come from."""

    def now(self) -> float:
        """Seconds on a monotonic clock (the timeline of ``call_at``)."""
        ...

    def call_soon(self, callback: Callable[[], object], /) -> Handle:
        """Run ``callback`` after the current work, in order with other call_soon work."""
        ...

    def call_at(self, when: float, callback: Callable[[], object], /) -> Handle:
        """Run ``callback`` once ``now()`` reaches ``when``."""
        ...

    def start(self, work: Coroutine[Any, Any, None], name: str) -> TaskHandle:
        """Run ``work`` in the background (mirror's kmirrord); cancel() stops it."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Let ``seconds`` pass on this clock (a worker resting between slices)."""
        ...


class LoopClock:
    """The running asyncio loop's clock: what the daemon and its targets use.

    Scheduling needs a running loop (RuntimeError without one): everything in the dm
    core runs on the daemon's loop, so a call from elsewhere is a bug to surface, not
    work to do on the spot.
    """

    def now(self) -> float:
        try:
            return asyncio.get_running_loop().time()
        except RuntimeError:  # no loop (a table built outside it): the same clock
            return time.monotonic()

    def call_soon(self, callback: Callable[[], object], /) -> Handle:
        return asyncio.get_running_loop().call_soon(callback)

    def call_at(self, when: float, callback: Callable[[], object], /) -> Handle:
        return asyncio.get_running_loop().call_at(when, callback)

    def start(self, work: Coroutine[Any, Any, None], name: str) -> TaskHandle:
        return asyncio.get_running_loop().create_task(work, name=name)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


LOOP_CLOCK = LoopClock()
"""The clock of every table and mapped device unless a test gives another."""
