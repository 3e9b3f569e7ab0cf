"""The daemon: what the control plane drives, in front of the parts that keep state.

Everything the control plane does goes through :class:`Daemon`. Which devices exist and
who holds them is the :class:`~backend.device_registry.DeviceRegistry`; what is served to
guests is :class:`~backend.exports.Exports`; state changes are announced on the event bus
(the QMP monitor turns them into events). The daemon ties them together (a mapped device
is not removed while exported) and knows nothing about QMP.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass

from . import targets as _targets  # noqa: F401  (registers the target types)
from .device_registry import DeviceEntry, DeviceRegistry, MappedEntry
from .dm import MappedDevice, Table
from .dm.events import TableEvent, TableEventKind
from .dm.target import StatusType
from .errors import DeviceError
from .event_bus import EventBus
from .exports import ExportEntry, Exports
from .limits import check_ascii, check_words

log = logging.getLogger(__name__)

PATH_EVENTS = {TableEventKind.PATH_FAILED: "PATH_FAILED",
               TableEventKind.PATH_REINSTATED: "PATH_REINSTATED"}
"""Table events that are also announced on their own, as ``{name, dev}``."""


@dataclass(frozen=True)
class MappedInfo:
    """A snapshot of a mapped device for query-dm and the dmsetup-style views."""

    name: str
    uuid: str
    state: str
    live_table: bool
    inactive_table: bool
    open_count: int
    event_nr: int
    table: str
    status: str
    inactive: str
    read_only: bool
    minor: int
    targets: int
    size_sectors: int
    stats: dict[str, object]


class Daemon:
    """All of vudm's live state, driven by the control plane."""

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.loop = loop or asyncio.get_running_loop()
        self.events = EventBus()
        self.registry = DeviceRegistry(self.loop)
        self.exports = Exports(self.registry, self.events.emit, self.loop)
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

    def mapped_entry(self, name: str) -> MappedEntry:
        return self.registry.mapped_entry(name)

    async def create_dm(self, name: str, table: str, *, uuid: str = "",
                        suspended: bool = False) -> None:
        """dmsetup create: a new mapped device with ``table`` live (or waiting).

        The device is invisible until it exists: while its table's devices open (an NBD
        handshake may take seconds) no other command sees it, maps onto it or exports
        it, and a create that fails leaves nothing behind.
        """
        with self.registry.creating(name, uuid):
            md = MappedDevice(name, uuid or None)
            try:
                parsed = await self.registry.parse(name, table)
                try:
                    md.create(parsed, suspended=suspended)
                except BaseException:
                    self.registry.discard_unloaded(parsed)
                    raise
            except BaseException:
                self.registry.release_unused_tables(name)
                raise
        self.registry.add_mapped(md)
        md.add_event_listener(self._on_table_event)
        log.info("mapped device %s: created%s", name, " (suspended)" if suspended else "")

    async def load_dm(self, name: str, table: str) -> None:
        """dmsetup load: ``table`` into the inactive slot (any previous one dropped)."""
        entry = self.mapped_entry(name)
        parsed = await self.registry.parse(name, table)
        try:
            entry.md.load(parsed)
        except BaseException:
            self.registry.discard_unloaded(parsed)
            raise
        self.registry.release_unused_tables(name)

    async def clear_dm(self, name: str) -> None:
        entry = self.mapped_entry(name)
        entry.md.clear()
        self.registry.release_unused_tables(name)

    async def suspend_dm(self, name: str, *, noflush: bool = False,
                         timeout: float | None = None) -> None:
        md = self.mapped_entry(name).md
        try:
            await md.suspend(noflush=noflush, timeout=timeout)
        except TimeoutError:
            raise DeviceError(f"suspend of {name!r} timed out after {timeout}s;"
                              " it was undone and the device is ACTIVE again") from None
        self.events.emit("DM_SUSPENDED", {"name": name, "noflush": noflush})

    async def resume_dm(self, name: str, *, noflush: bool = False) -> None:
        """dmsetup resume; what it does in each state is the device's to decide (a
        no-op when not suspended and nothing is loaded, as in Linux: MappedDevice.resume).
        """
        md = self.mapped_entry(name).md
        if not await md.resume(noflush=noflush):
            return
        self.registry.release_unused_tables(name)
        self.events.emit("DM_RESUMED", {"name": name})
        # a resume may bind a table of another size (dm's resize): the guests see it
        for export in self.exports.of(name):
            export.export.capacity_changed()

    async def message_dm(self, name: str, sector: int, message: str) -> str:
        md = self.mapped_entry(name).md
        argv = check_words(check_ascii(message, "message").split(), "message")
        if not argv:
            raise DeviceError("empty message")
        return md.message(sector, argv)

    async def wait_dm(self, name: str, event_nr: int, timeout: float | None = None) -> int:
        md = self.mapped_entry(name).md
        try:
            return await md.wait(event_nr, timeout)
        except TimeoutError:
            raise DeviceError(f"event number still {md.event_nr} after {timeout}s") from None

    async def remove_dm(self, name: str, *, force: bool = False) -> None:
        """dmsetup remove; refused while exported (unless forced) or while another table
        or a registered device maps onto it (even forced)."""
        self.mapped_entry(name)
        exported = [e.id for e in self.exports.of(name)]
        if exported and not force:
            raise DeviceError(f"mapped device {name!r} is exported by"
                              f" {', '.join(map(repr, exported))}; export-del first")
        users = self.registry.users_of(name)
        if users:
            # Not even with force: the user would map a device that no longer exists.
            raise DeviceError(f"mapped device {name!r} is used by {', '.join(users)}")
        # Ask the device first: a refusal (a suspend under way) must leave the exports.
        self.mapped_entry(name).md.check_remove(force=force)
        for export_id in exported:
            await self.del_export(export_id, force=True)
        await self._destroy_dm(name, force=force)

    async def _destroy_dm(self, name: str, *, force: bool) -> None:
        entry = self.mapped_entry(name)
        entry.md.remove(force=force)
        entry.md.remove_event_listener(self._on_table_event)
        self.registry.forget_mapped(name)
        log.info("mapped device %s: removed", name)

    def dm_info(self, name: str) -> MappedInfo:
        entry = self.mapped_entry(name)
        md = entry.md
        info = md.info()
        return MappedInfo(
            name=name, uuid=md.uuid or "", state=info.state.value,
            live_table=info.live_table, inactive_table=info.inactive_table,
            open_count=info.open_count, event_nr=info.event_nr,
            table=md.status(StatusType.TABLE), status=md.status(StatusType.INFO),
            inactive=md.status(StatusType.TABLE, inactive=True),
            read_only=False, minor=entry.minor,
            targets=info.target_count, size_sectors=info.size_sectors, stats=md.stats())

    def _on_table_event(self, name: str, event_nr: int, event: TableEvent) -> None:
        self.events.emit("DM_EVENT", {"name": name, "event-nr": event_nr,
                                      "reason": event.reason})
        path_event = PATH_EVENTS.get(event.kind)
        if path_event is not None:
            self.events.emit(path_event, {"name": name, "dev": event.dev})

    # -- exports -------------------------------------------------------------------

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
        while self.mapped:
            # Upper devices first; devices registered as dm: go with the devices.
            name = self.registry.next_to_remove()
            try:
                await self._destroy_dm(name, force=True)
            except Exception:
                log.exception("removing mapped device %s failed", name)
                self.registry.forget_mapped(name)
        self.registry.close_devices()
