"""The mapped-device lifecycle: dmsetup's verbs on the daemon's mapped devices.

Each verb resolves the device in the registry, lets the device decide what its state
allows (MappedDevice owns its state machine), keeps the registry's table references in
step with the live and inactive tables, and announces what happened on the event bus.
It also ties mapped devices to exports: a device is not removed while exported (unless
forced), and a resume that changes the size tells the guests.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from .device_registry import DeviceRegistry
from .dm import MappedDevice
from .dm.events import TableEvent, TableEventKind
from .dm.target import StatusType
from .errors import DeviceError
from .event_bus import EventListener
from .exports import Exports
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


class MappedDevices:
    """create/load/clear/suspend/resume/message/wait/remove of mapped devices."""

    def __init__(self, registry: DeviceRegistry, exports: Exports,
                 emit: EventListener) -> None:
        self._registry = registry
        self._exports = exports
        self._emit = emit

    async def create(self, name: str, table: str, *, uuid: str = "",
                        suspended: bool = False) -> None:
        """dmsetup create: a new mapped device with ``table`` live (or waiting).

        The device is invisible until it exists: while its table's devices open (an NBD
        handshake may take seconds) no other command sees it, maps onto it or exports
        it, and a create that fails leaves nothing behind.
        """
        with self._registry.creating(name, uuid):
            md = MappedDevice(name, uuid or None)
            try:
                parsed = await self._registry.parse(name, table)
                try:
                    md.create(parsed, suspended=suspended)
                except BaseException:
                    self._registry.discard_unloaded(parsed)
                    raise
            except BaseException:
                self._registry.release_unused_tables(name)
                raise
        self._registry.add_mapped(md)
        md.add_event_listener(self._on_table_event)
        log.info("mapped device %s: created%s", name, " (suspended)" if suspended else "")

    async def load(self, name: str, table: str) -> None:
        """dmsetup load: ``table`` into the inactive slot (any previous one dropped)."""
        entry = self._registry.mapped_entry(name)
        parsed = await self._registry.parse(name, table)
        try:
            entry.md.load(parsed)
        except BaseException:
            self._registry.discard_unloaded(parsed)
            raise
        self._registry.release_unused_tables(name)

    async def clear(self, name: str) -> None:
        entry = self._registry.mapped_entry(name)
        entry.md.clear()
        self._registry.release_unused_tables(name)

    async def suspend(self, name: str, *, noflush: bool = False,
                         timeout: float | None = None) -> None:
        md = self._registry.mapped_entry(name).md
        try:
            await md.suspend(noflush=noflush, timeout=timeout)
        except TimeoutError:
            raise DeviceError(f"suspend of {name!r} timed out after {timeout}s;"
                              " it was undone and the device is ACTIVE again") from None
        self._emit("DM_SUSPENDED", {"name": name, "noflush": noflush})

    async def resume(self, name: str, *, noflush: bool = False) -> None:
        """dmsetup resume; what it does in each state is the device's to decide (a
        no-op when not suspended and nothing is loaded, as in Linux: MappedDevice.resume).
        """
        md = self._registry.mapped_entry(name).md
        if not await md.resume(noflush=noflush):
            return
        self._registry.release_unused_tables(name)
        self._emit("DM_RESUMED", {"name": name})
        # a resume may bind a table of another size (dm's resize): the guests see it
        for export in self._exports.of(name):
            export.export.capacity_changed()

    async def message(self, name: str, sector: int, message: str) -> str:
        md = self._registry.mapped_entry(name).md
        argv = check_words(check_ascii(message, "message").split(), "message")
        if not argv:
            raise DeviceError("empty message")
        return md.message(sector, argv)

    async def wait(self, name: str, event_nr: int, timeout: float | None = None) -> int:
        md = self._registry.mapped_entry(name).md
        try:
            return await md.wait(event_nr, timeout)
        except TimeoutError:
            raise DeviceError(f"event number still {md.event_nr} after {timeout}s") from None

    async def remove(self, name: str, *, force: bool = False) -> None:
        """dmsetup remove; refused while exported (unless forced) or while another table
        or a registered device maps onto it (even forced)."""
        self._registry.mapped_entry(name)
        exported = [e.id for e in self._exports.of(name)]
        if exported and not force:
            raise DeviceError(f"mapped device {name!r} is exported by"
                              f" {', '.join(map(repr, exported))}; export-del first")
        users = self._registry.users_of(name)
        if users:
            # Not even with force: the user would map a device that no longer exists.
            raise DeviceError(f"mapped device {name!r} is used by {', '.join(users)}")
        # Ask the device first: a refusal (a suspend under way) must leave the exports.
        self._registry.mapped_entry(name).md.check_remove(force=force)
        for export_id in exported:
            await self._exports.remove(export_id, force=True)
        await self._destroy(name, force=force)

    async def _destroy(self, name: str, *, force: bool) -> None:
        entry = self._registry.mapped_entry(name)
        entry.md.remove(force=force)
        entry.md.remove_event_listener(self._on_table_event)
        self._registry.forget_mapped(name)
        log.info("mapped device %s: removed", name)

    def info(self, name: str) -> MappedInfo:
        entry = self._registry.mapped_entry(name)
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
        self._emit("DM_EVENT", {"name": name, "event-nr": event_nr,
                                      "reason": event.reason})
        path_event = PATH_EVENTS.get(event.kind)
        if path_event is not None:
            self._emit(path_event, {"name": name, "dev": event.dev})

    async def remove_all(self) -> None:
        """Remove every mapped device, upper ones first (shutdown; exports are gone)."""
        while self._registry.mapped:
            # Devices registered as dm: go with the devices, after this.
            name = self._registry.next_to_remove()
            try:
                await self._destroy(name, force=True)
            except Exception:
                log.exception("removing mapped device %s failed", name)
                self._registry.forget_mapped(name)
