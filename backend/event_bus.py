"""The daemon's event bus: named events with a JSON-able payload, fanned out to whoever
listens (the QMP monitor turns them into QMP events; tests subscribe too).

Emitting is synchronous and never fails for the emitter: a listener that raises is
logged and the others still get the event.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)

EventListener = Callable[[str, Mapping[str, object]], None]
"""(event name, payload) -> None."""


class EventBus:
    """Synchronous fan-out of named events with a JSON-able payload."""

    def __init__(self) -> None:
        self._listeners: list[EventListener] = []

    def subscribe(self, listener: EventListener) -> Callable[[], None]:
        """Call ``listener(name, data)`` on every event; returns the unsubscribe call."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def emit(self, name: str, data: Mapping[str, object]) -> None:
        log.info("event %s %s", name, dict(data))
        for listener in list(self._listeners):
            try:
                listener(name, data)
            except Exception:
                log.exception("event listener failed on %s", name)
