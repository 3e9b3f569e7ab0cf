"""The deterministic context for target unit tests: a manual clock the test drives.

A table parsed with ``parse_table(text, resolve, clock=ManualClock())`` gives its
targets a TargetContext whose time moves only on ``advance``: timers (``call_at``) and
``call_soon`` work run then, in time order, on the test's own stack. Nothing waits on a
wall clock, so a test of a 5-second delay takes no time and cannot be flaky.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from backend.dm.clock import TaskHandle


class Timer:
    """A callback due at ``when``; ``cancel`` keeps it from running."""

    def __init__(self, when: float, callback: Callable[[], object]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class ManualClock:
    """A Clock (backend.dm.clock) that moves only when told to."""

    def __init__(self, now: float = 1000.0) -> None:
        self.time = now
        self.timers: list[Timer] = []

    def now(self) -> float:
        return self.time

    def call_soon(self, callback: Callable[[], object], /) -> Timer:
        """Due now: runs at the next ``advance`` (``advance(0)`` runs just these)."""
        return self.call_at(self.time, callback)

    def call_at(self, when: float, callback: Callable[[], object], /) -> Timer:
        timer = Timer(when, callback)
        self.timers.append(timer)
        return timer

    def start(self, work: Coroutine[Any, Any, None], name: str) -> TaskHandle:
        """Background work runs on the test's event loop (its sleeps use this clock)."""
        return asyncio.get_running_loop().create_task(work, name=name)

    async def sleep(self, seconds: float) -> None:
        done = asyncio.get_running_loop().create_future()
        timer = self.call_at(self.time + seconds,
                             lambda: done.done() or done.set_result(None))
        try:
            await done
        finally:
            timer.cancel()

    def advance(self, seconds: float) -> None:
        """Move time on by ``seconds``, running every timer that falls due, in order
        (timers a callback arms are run too if they fall due)."""
        self.time += seconds
        while True:
            due = [t for t in self.timers if not t.cancelled and t.when <= self.time]
            if not due:
                self.timers = [t for t in self.timers if not t.cancelled]
                return
            timer = min(due, key=lambda t: t.when)
            self.timers.remove(timer)
            timer.callback()

    @property
    def armed(self) -> list[float]:
        """Seconds from now to each pending timer, soonest first."""
        return sorted(t.when - self.time for t in self.timers if not t.cancelled)
