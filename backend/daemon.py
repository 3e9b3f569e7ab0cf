"""The daemon's state: registered devices, mapped devices, exports, and an event bus.

Everything the control plane does goes through :class:`Daemon`; it owns the objects and
the bookkeeping that ties them together: which tables use which registered device (a
device is not removed while a table holds it), which export serves which mapped device
(a mapped device is not removed while exported), and the bus on which state changes are
announced (the QMP monitor turns them into events). It knows nothing about QMP.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from .blockio import BlockDevice
from .devices.uri import open_uri
from .errors import DeviceError

log = logging.getLogger(__name__)

EventListener = Callable[[str, Mapping[str, object]], None]


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


@runtime_checkable
class Closable(Protocol):
    def close(self) -> None: ...


@dataclass
class DeviceEntry:
    """A registered device and the tables (``(dm name, slot)``) that reference it."""

    name: str
    uri: str
    read_only: bool
    device: BlockDevice
    users: set[tuple[str, str]] = field(default_factory=set)

    @property
    def state(self) -> str:
        connected = getattr(self.device, "connected", True)
        return "ok" if connected else "disconnected"


class Daemon:
    """All of vudm's live state, driven by the control plane."""

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.loop = loop or asyncio.get_running_loop()
        self.events = EventBus()
        self.devices: dict[str, DeviceEntry] = {}
        self.quit_requested = asyncio.Event()

    # -- devices ---------------------------------------------------------------------

    async def add_device(self, name: str, uri: str, *, read_only: bool = False) -> DeviceEntry:
        """Open ``uri`` and register it as ``name``."""
        if name in self.devices:
            raise DeviceError(f"device {name!r} already exists")
        device = await open_uri(name, uri, read_only=read_only, loop=self.loop)
        if name in self.devices:  # raced with another dev-add of the same name
            _close(device)
            raise DeviceError(f"device {name!r} already exists")
        entry = DeviceEntry(name, uri, read_only, device)
        self.devices[name] = entry
        log.info("device %s: added (%s, %d bytes)", name, uri, device.size)
        return entry

    def device(self, name: str) -> DeviceEntry:
        try:
            return self.devices[name]
        except KeyError:
            raise DeviceError(f"no device named {name!r}") from None

    def remove_device(self, name: str) -> None:
        """Close and forget a device no table references."""
        entry = self.device(name)
        if entry.users:
            users = ", ".join(f"{dm} ({slot} table)" for dm, slot in sorted(entry.users))
            raise DeviceError(f"device {name!r} is in use by {users}")
        del self.devices[name]
        _close(entry.device)
        log.info("device %s: removed", name)

    async def close(self) -> None:
        """Close everything: devices last."""
        for name in list(self.devices):
            _close(self.devices.pop(name).device)


def _close(device: object) -> None:
    if isinstance(device, Closable):
        try:
            device.close()
        except Exception:
            log.exception("closing %r failed", device)
