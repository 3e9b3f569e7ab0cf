"""The daemon: what the control plane drives, in front of the parts that keep state.

Everything the control plane does goes through :class:`Daemon`, a facade over four
parts: which devices exist and who holds them (:class:`~backend.device_registry.
DeviceRegistry`), the mapped devices' lifecycle (:class:`~backend.mapped_devices.
MappedDevices`), what is served to guests (:class:`~backend.exports.Exports`), and the
event bus on which they announce state changes (the QMP monitor turns them into
events). It knows nothing about QMP.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from . import targets as _targets  # noqa: F401  (registers the target types)
from .device_registry import DeviceEntry, DeviceRegistry, MappedEntry
from .dm import Table
from .event_bus import EventBus
from .exports import ExportEntry, Exports
from .mapped_devices import MappedDevices, MappedInfo


class Daemon:
    """All of vudm's live state, driven by the control plane."""

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.loop = loop or asyncio.get_running_loop()
        self.events = EventBus()
        self.registry = DeviceRegistry(self.loop)
        self.exports = Exports(self.registry, self.events.emit, self.loop)
        self.mapped_devices = MappedDevices(self.registry, self.exports, self.events.emit)
        # The registry's and the exports' own tables, read by queries and the snapshot.
        self.devices: Mapping[str, DeviceEntry] = self.registry.devices
        self.mapped: Mapping[str, MappedEntry] = self.registry.mapped
        self.listeners = self.exports.listeners
        self.quit_requested = asyncio.Event()
        self.draining = False

    # -- devices ---------------------------------------------------------------------

    async def add_device(self, name: str, uri: str, *, read_only: bool = False) -> DeviceEntry:
        """Open ``uri`` and register it as ``name``."""
        return await self.registry.add_device(name, uri, read_only=read_only)

    def remove_device(self, name: str) -> None:
        """Close and forget a device no table references."""
        self.registry.remove_device(name)

    def table_text(self, table: Table) -> str:
        """The text ``table`` was parsed from (as given to create or load)."""
        return self.registry.table_text(table)

    # -- mapped devices --------------------------------------------------------------

    async def create_dm(self, name: str, table: str, *, uuid: str = "",
                        suspended: bool = False) -> None:
        """dmsetup create: a new mapped device with ``table`` live (or waiting)."""
        await self.mapped_devices.create(name, table, uuid=uuid, suspended=suspended)

    async def load_dm(self, name: str, table: str) -> None:
        """dmsetup load: ``table`` into the inactive slot (any previous one dropped)."""
        await self.mapped_devices.load(name, table)

    async def clear_dm(self, name: str) -> None:
        """dmsetup clear: drop the inactive table."""
        await self.mapped_devices.clear(name)

    async def suspend_dm(self, name: str, *, noflush: bool = False,
                         timeout: float | None = None) -> None:
        """dmsetup suspend (``timeout``: undo it if in-flight I/O takes longer)."""
        await self.mapped_devices.suspend(name, noflush=noflush, timeout=timeout)

    async def resume_dm(self, name: str, *, noflush: bool = False) -> None:
        """dmsetup resume: what it does in each state is the device's to decide."""
        await self.mapped_devices.resume(name, noflush=noflush)

    async def message_dm(self, name: str, sector: int, message: str) -> str:
        """dmsetup message to the target at ``sector``; its reply."""
        return await self.mapped_devices.message(name, sector, message)

    async def wait_dm(self, name: str, event_nr: int, timeout: float | None = None) -> int:
        """dmsetup wait: the event number, once above ``event_nr``."""
        return await self.mapped_devices.wait(name, event_nr, timeout)

    async def remove_dm(self, name: str, *, force: bool = False) -> None:
        """dmsetup remove; refused while exported (unless forced) or mapped onto."""
        await self.mapped_devices.remove(name, force=force)

    def dm_info(self, name: str) -> MappedInfo:
        """What query-dm reports of one mapped device."""
        return self.mapped_devices.info(name)

    # -- exports ---------------------------------------------------------------------

    async def add_export(self, export_id: str, dm: str, socket: str, *, num_queues: int = 1,
                         writable: bool = True, serial: str = "") -> ExportEntry:
        """Serve mapped device ``dm`` on a vhost-user-blk socket at ``socket``."""
        return await self.exports.add(export_id, dm, socket, num_queues=num_queues,
                                      writable=writable, serial=serial)

    async def del_export(self, export_id: str, *, force: bool = False) -> None:
        """Stop an export; refused while a guest is attached unless ``force``."""
        await self.exports.remove(export_id, force=force)

    # -- shutdown --------------------------------------------------------------------

    async def drain(self, timeout: float | None = 30.0) -> None:
        """Stop popping requests from every guest and wait for those in flight, then
        drop the guests (a ``reconnect=1`` guest comes back to the next daemon, which
        resubmits whatever did not complete within ``timeout``)."""
        self.draining = True
        self.quit_requested.set()
        await self.exports.drain(timeout)

    def shutdown_status(self) -> str:
        """What a shutdown is waiting for, in words (a second SIGTERM or quit says it)."""
        return self.exports.shutdown_status()

    async def close(self) -> None:
        """Close everything: exports, then mapped devices (upper first), then devices."""
        await self.exports.remove_all()
        await self.mapped_devices.remove_all()
        self.registry.close_devices()
