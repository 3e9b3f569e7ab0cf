"""A mapped device's event number: raised by table events, waited on by ``dmsetup wait``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from backend.errors import StateError

EventListener = Callable[[str, int, str], None]
"""Called with (device name, new event number, reason) on every table event."""


class EventCounter:
    """``md->event_nr`` plus its wait queue and the listeners the control plane adds."""

    def __init__(self, device_name: str, logger: logging.Logger) -> None:
        self.device_name = device_name
        self.log = logger
        self.event_nr = 0
        self._changed = asyncio.Event()
        self._listeners: list[EventListener] = []
        self.closed = False

    def close(self) -> None:
        """The device is gone: wake every waiter, who is told so (never left hanging)."""
        self.closed = True
        self._changed.set()

    def add_listener(self, listener: EventListener) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: EventListener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def raise_event(self, reason: str) -> int:
        """dm_table_event: bump the number, wake waiters, tell listeners (never raises)."""
        self.event_nr += 1
        self.log.info("table event %d: %s", self.event_nr, reason)
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
        for listener in list(self._listeners):
            try:
                listener(self.device_name, self.event_nr, reason)
            except Exception:
                self.log.exception("event listener %r raised", listener)
        return self.event_nr

    async def wait(self, event_nr: int, timeout: float | None = None) -> int:
        """Return the current event number once it differs from ``event_nr``.

        Raises TimeoutError after ``timeout`` seconds (None: wait forever), StateError
        once the device is removed.
        """
        async with asyncio.timeout(timeout):
            while self.event_nr == event_nr and not self.closed:
                await self._changed.wait()
        if self.closed and self.event_nr == event_nr:
            raise StateError("wait", "removed", "a present device")
        return self.event_nr
