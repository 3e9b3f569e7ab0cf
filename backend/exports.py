"""Exports: mapped devices served to guests on vhost-user-blk sockets.

An export holds its mapped device open (so it is not removed under a guest), is refused
on a socket another export serves, and announces its guest's comings and goings on the
event bus. At shutdown the exports drain: no new request is popped, those in flight are
waited for, and the guests are dropped (a ``reconnect=1`` guest comes back to the next
daemon).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from .device_registry import DeviceRegistry
from .errors import DeviceError
from .event_bus import EventListener
from .vhost.blk import VhostUserBlkExport

log = logging.getLogger(__name__)


@dataclass
class ExportEntry:
    """An export of a mapped device on a vhost-user-blk socket."""

    id: str
    dm: str
    socket: Path
    num_queues: int
    writable: bool
    serial: str
    export: VhostUserBlkExport

    @property
    def connected(self) -> bool:
        return self.export.connected


class Exports(Mapping[str, ExportEntry]):
    """The exports by id (read as a mapping), and their add/remove/drain."""

    def __init__(self, registry: DeviceRegistry, emit: EventListener,
                 loop: asyncio.AbstractEventLoop) -> None:
        self._registry = registry
        self._emit = emit
        self._loop = loop
        self._entries: dict[str, ExportEntry] = {}
        self.listeners: dict[int, socket.socket] = {}
        """Listening sockets the daemon was started with (fd -> socket), each taken by
        the first export-add whose socket is ``fd:N``."""

    def __getitem__(self, export_id: str) -> ExportEntry:
        return self._entries[export_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def of(self, dm: str) -> list[ExportEntry]:
        """The exports serving mapped device ``dm``."""
        return [e for e in self._entries.values() if e.dm == dm]

    async def add(self, export_id: str, dm: str, socket: str, *, num_queues: int = 1,
                  writable: bool = True, serial: str = "") -> ExportEntry:
        """Serve mapped device ``dm`` on a vhost-user-blk socket at ``socket``."""
        if export_id in self._entries:
            raise DeviceError(f"export {export_id!r} already exists")
        md = self._registry.mapped_entry(dm).md
        path = Path(socket)
        for other in self._entries.values():
            if other.socket == path:
                raise DeviceError(f"socket {socket} is taken by export {other.id!r}")
        listener = None
        if socket.startswith("fd:"):
            fd = int(socket[3:]) if socket[3:].isdigit() else -1
            if fd not in self.listeners:
                raise DeviceError(f"socket {socket}: not a listening socket this daemon "
                                  "was started with")
            listener = self.listeners[fd]
        export = VhostUserBlkExport(
            export_id, md, path, num_queues=num_queues, writable=writable, serial=serial,
            loop=self._loop, on_connected=self._on_connected,
            on_disconnected=self._on_disconnected,
            on_resubmit=self._on_resubmit, listener=listener)
        export.start()
        if listener is not None:
            del self.listeners[listener.fileno()]
        md.open()
        entry = ExportEntry(export_id, dm, path, num_queues, writable, serial, export)
        self._entries[export_id] = entry
        log.info("export %s: %s on %s", export_id, dm, path)
        return entry

    async def remove(self, export_id: str, *, force: bool = False) -> None:
        """Stop an export; refused while a guest is attached unless ``force``."""
        entry = self._entries.get(export_id)
        if entry is None:
            raise DeviceError(f"no export named {export_id!r}")
        if entry.connected and not force:
            raise DeviceError(f"export {export_id!r} has a guest attached"
                              " (device_del it first, or force)")
        del self._entries[export_id]
        try:
            await entry.export.close()
        finally:
            mapped = self._registry.mapped.get(entry.dm)
            if mapped is not None:
                mapped.md.close()
        log.info("export %s: removed", export_id)

    async def remove_all(self) -> None:
        """Close every export (shutdown: guests still attached are dropped)."""
        for export_id in list(self._entries):
            try:
                await self.remove(export_id, force=True)
            except Exception:
                log.exception("closing export %s failed", export_id)

    def _on_connected(self, export_id: str) -> None:
        self._emit("EXPORT_CONNECTED", {"id": export_id})

    def _on_resubmit(self, export_id: str, queue: int, count: int) -> None:
        self._emit("EXPORT_RESUBMITTED", {"id": export_id, "queue": queue, "count": count})

    def _on_disconnected(self, export_id: str) -> None:
        self._emit("EXPORT_DISCONNECTED", {"id": export_id})

    # -- shutdown --------------------------------------------------------------------

    async def drain(self, timeout: float | None = 30.0) -> None:
        """Stop popping requests from every guest and wait for those in flight, then
        drop the guests (a ``reconnect=1`` guest comes back to the next daemon, which
        resubmits whatever did not complete within ``timeout``)."""
        log.info("%s", self.shutdown_status())
        exports = [e.export for e in self._entries.values()]
        await asyncio.gather(*(e.close(timeout) for e in exports), return_exceptions=True)
        log.info("drained")

    def shutdown_status(self) -> str:
        """What a shutdown is waiting for, in words (a second SIGTERM or quit says it)."""
        busy = []
        for e in self._entries.values():
            n = e.export.in_flight
            if not n:
                continue
            md = self._registry.mapped.get(e.dm)
            where = ""
            if md is not None:
                info = md.md.info()
                where = (f" (mapped device {e.dm!r} {info.state.value}, {info.deferred}"
                         f" deferred, {info.in_flight} in its targets)")
            busy.append(f"{n} request(s) in flight on export {e.id!r}{where}")
        if not busy:
            return "draining: no request in flight, closing"
        return "draining: waiting for " + "; ".join(busy)
