"""Every event a QMP peer sends, kept in order and waitable: a scenario waits for
"PATH_FAILED for p0 after I killed it", not for a number of seconds."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import Any

from qemu.qmp import EventListener, QMPClient


class EventLog:
    """Collects ``client``'s events; ``wait`` finds one by name and data after a mark."""

    def __init__(self, client: QMPClient) -> None:
        self.events: list[dict[str, Any]] = []
        self._changed = asyncio.Condition()
        self._listener = EventListener()
        client.register_listener(self._listener)
        self._client = client
        self._task = asyncio.ensure_future(self._pump())

    async def _pump(self) -> None:
        while True:
            msg = await self._listener.get()
            async with self._changed:
                self.events.append(dict(msg))
                self._changed.notify_all()

    def mark(self) -> int:
        """A position: ``wait(..., since=mark)`` only looks at events after it."""
        return len(self.events)

    def find(self, name: str, match: Mapping[str, Any] | None = None,
             since: int = 0) -> dict[str, Any] | None:
        for ev in self.events[since:]:
            if ev.get("event") != name:
                continue
            data = ev.get("data", {})
            if all(v(data.get(k)) if callable(v) else data.get(k) == v
                   for k, v in (match or {}).items()):
                return ev
        return None

    async def wait(self, name: str, match: Mapping[str, Any] | None = None, *,
                   since: int = 0, timeout: float = 30.0) -> dict[str, Any]:
        """The first event ``name`` whose data contains ``match``, after ``since`` (a
        callable value in ``match`` is a predicate on that field)."""
        async def found() -> dict[str, Any]:
            async with self._changed:
                while True:
                    ev = self.find(name, match, since)
                    if ev is not None:
                        return ev
                    await self._changed.wait()

        try:
            return await asyncio.wait_for(found(), timeout)
        except TimeoutError:
            seen = [e.get("event") for e in self.events[since:]]
            raise TimeoutError(f"no {name} {dict(match or {})} within {timeout}s "
                               f"(events since mark: {seen})") from None

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._client.remove_listener(self._listener)
