"""Hand completions from worker threads back to the event loop, in batches.

``loop.call_soon_threadsafe`` writes to the loop's self-pipe once per call. Here a worker
appends to a deque and rings an eventfd only when the deque was empty, so a burst of
completions costs one wake-up; the loop drains the whole deque per wake-up.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import threading
from collections.abc import Callable

from ..blockio import Completion, Status


class CompletionQueue:
    """A thread-safe queue of ``(done, status)`` pairs drained on the loop thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._pending: collections.deque[tuple[Completion, Status]] = collections.deque()
        self._lock = threading.Lock()
        self._armed = False
        self._efd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        loop.add_reader(self._efd, self._drain)

    def put(self, done: Completion, status: Status) -> None:
        """Queue a completion from any thread."""
        with self._lock:
            self._pending.append((done, status))
            ring = not self._armed
            self._armed = True
        if ring:
            os.eventfd_write(self._efd, 1)

    def _drain(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.eventfd_read(self._efd)
        with self._lock:
            batch = self._pending
            self._pending = collections.deque()
            self._armed = False
        for done, status in batch:
            done(status)

    def close(self) -> None:
        """Stop watching the eventfd; completions still queued are delivered first."""
        self._drain()
        self._loop.remove_reader(self._efd)
        os.close(self._efd)


def call_in_loop(loop: asyncio.AbstractEventLoop) -> Callable[[Completion, Status], None]:
    """A ``put`` for code that has no CompletionQueue (tests, rare paths)."""

    def put(done: Completion, status: Status) -> None:
        loop.call_soon_threadsafe(done, status)

    return put
