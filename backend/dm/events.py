"""Table events: what a target tells its mapped device (``dm_table_event``), typed.

A target raises a :class:`TableEvent` through its TargetContext; the device's
:class:`EventCounter` bumps ``md->event_nr`` (what ``dmsetup wait`` waits on) and hands
the event, as it is, to its listeners (the daemon turns it into QMP events). The event
carries the facts (which path, which leg, how many paths are left); ``reason`` words
them for people, and nobody parses those words back.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass

from backend.errors import StateError


class TableEventKind(enum.Enum):
    """What happened in a table (the kernel raises one event kind; we say which)."""

    PATH_FAILED = "path-failed"
    """multipath: a path was failed (an I/O error on it, or ``fail_path``)."""
    PATH_REINSTATED = "path-reinstated"
    """multipath: a failed path is usable again (``reinstate_path``)."""
    GROUP_CHANGED = "group-changed"
    """multipath: ``switch_group``, ``enable_group`` or ``disable_group`` (``detail``)."""
    LEG_FAILED = "leg-failed"
    """mirror: the first error of one kind (``detail``: write, read, sync) on a leg."""
    LOG_FAILED = "log-failed"
    """mirror: the dirty-log device failed (``detail``: write, flush, read)."""
    IN_SYNC = "in-sync"
    """mirror: every region is in sync."""
    STRIPE_ERROR = "stripe-error"
    """striped: an I/O error on one stripe (``stripe``)."""


@dataclass(frozen=True)
class TableEvent:
    """One table event. ``dev`` is the table's name of the device it is about (a path,
    a leg, a log, a stripe; "" when it is about the whole target)."""

    kind: TableEventKind
    dev: str = ""
    detail: str = ""
    """A word the kind needs: the message verb (GROUP_CHANGED), the failed operation
    (LEG_FAILED, LOG_FAILED)."""
    valid_paths: int | None = None
    """multipath path events: usable paths left after the change."""
    group: int | None = None
    """GROUP_CHANGED: the priority group's number (from 1)."""
    stripe: int | None = None
    """STRIPE_ERROR: the stripe's index (from 0)."""

    @property
    def reason(self) -> str:
        """The event in words: what logs and QMP's DM_EVENT ``reason`` show."""
        kind = self.kind
        valid = f" ({self.valid_paths} valid)" if self.valid_paths is not None else ""
        if kind is TableEventKind.PATH_FAILED:
            return f"path failed: {self.dev}{valid}"
        if kind is TableEventKind.PATH_REINSTATED:
            return f"path reinstated: {self.dev}{valid}"
        if kind is TableEventKind.GROUP_CHANGED:
            return f"priority group {self.group}: {self.detail}"
        if kind is TableEventKind.LEG_FAILED:
            return f"mirror leg {self.dev} failed ({self.detail} error)"
        if kind is TableEventKind.LOG_FAILED:
            return f"mirror log device {self.dev} failed ({self.detail})"
        if kind is TableEventKind.IN_SYNC:
            return "mirror in sync"
        return f"striped: I/O error on stripe {self.stripe} ({self.dev})"


EventListener = Callable[[str, int, TableEvent], None]
"""Called with (device name, new event number, event) on every table event."""


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

    def raise_event(self, event: TableEvent) -> int:
        """dm_table_event: bump the number, wake waiters, tell listeners (never raises)."""
        self.event_nr += 1
        self.log.info("table event %d: %s", self.event_nr, event.reason)
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
        for listener in list(self._listeners):
            try:
                listener(self.device_name, self.event_nr, event)
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
