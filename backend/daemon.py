"""The daemon's state: registered devices, mapped devices, exports, and an event bus.

Everything the control plane does goes through :class:`Daemon`; it owns the objects and
the bookkeeping that ties them together: which tables use which registered device (a
device is not removed while a table holds it), which export serves which mapped device
(a mapped device is not removed while exported), and the bus on which state changes are
announced (the QMP monitor turns them into events). It knows nothing about QMP.

Tables name devices three ways: a name registered with ``add_device``, ``dm:NAME`` (a
mapped device of this daemon, stacked), or an inline URI (``file:/x``, ``null:1G``...),
which is opened for that table and closed with it.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from . import targets as _targets  # noqa: F401  (registers the target types)
from .blockio import BlockDevice
from .devices import schemes
from .devices.nbd import open_nbd_offline
from .devices.uri import open_uri, scheme_of
from .dm import MappedBlockDevice, MappedDevice, Table, parse_table
from .dm.events import TableEvent, TableEventKind
from .dm.mapped_device import DeviceState
from .dm.target import StatusType
from .errors import DeviceError, StateError
from .limits import check_ascii, check_words
from .vhost.blk import VhostUserBlkExport

log = logging.getLogger(__name__)

EventListener = Callable[[str, Mapping[str, object]], None]

DM_MAJOR = 253
"""What ``info`` reports as the major number (there is no kernel device)."""
READ_AHEAD = 256
"""What ``info`` reports as read-ahead, in sectors (dmsetup's usual default)."""

INLINE_SCHEMES = ("file", "null", "mem", "nbd", "nbd+unix")
_INLINE_RE = re.compile("^(" + "|".join(map(re.escape, INLINE_SCHEMES)) + r"):\S+$")
PATH_EVENTS = {TableEventKind.PATH_FAILED: "PATH_FAILED",
               TableEventKind.PATH_REINSTATED: "PATH_REINSTATED"}
"""Table events that are also announced on their own, as ``{name, dev}``."""


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
    """A registered device; ``users`` are the mapped devices whose tables reference it.

    ``inline`` devices were opened for a table from a URI in it and go with their
    last table.
    """

    name: str
    uri: str
    read_only: bool
    device: BlockDevice
    inline: bool = False
    users: dict[int, str] = field(default_factory=dict)
    """id(table) -> the mapped device's name, one entry per table using the device."""

    @property
    def state(self) -> str:
        connected = getattr(self.device, "connected", True)
        if not connected:
            return "disconnected"
        state = getattr(self.device, "state", "ok")
        return state if isinstance(state, str) else "ok"



@dataclass
class TableUse:
    """What one parsed table holds: registered device names and stacked handles."""

    dm: str
    devices: set[str] = field(default_factory=set)
    stacked: list[MappedBlockDevice] = field(default_factory=list)
    text: str = ""
    """The table as it was given: what the state journal records and restores."""


@dataclass
class MappedEntry:
    """A mapped device with its daemon-side fact, the minor number. Its state, and which
    operation may run when, is the device's own (MappedDevice)."""

    md: MappedDevice
    minor: int


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
    read_ahead: int
    major: int
    minor: int
    targets: int
    size_sectors: int
    stats: dict[str, object]


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


class Daemon:
    """All of vudm's live state, driven by the control plane."""

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.loop = loop or asyncio.get_running_loop()
        self.events = EventBus()
        self.devices: dict[str, DeviceEntry] = {}
        self.mapped: dict[str, MappedEntry] = {}
        self.exports: dict[str, ExportEntry] = {}
        self.listeners: dict[int, socket.socket] = {}
        """Listening sockets the daemon was started with (fd -> socket), each taken by
        the first export-add whose socket is ``fd:N``."""
        self.quit_requested = asyncio.Event()
        self.draining = False
        self._uses: dict[int, TableUse] = {}
        self._creating: dict[str, str] = {}
        """Mapped devices being created: name -> uuid. Invisible until they exist, but
        their names (and uuids) are taken."""
        self._minors = itertools.count()
        self.offline_sizes: dict[str, int] = {}
        """URI -> size in bytes of NBD devices that may open disconnected (a restore
        sets it: a path whose server is down comes back failed, not as an error)."""
        # `dev-add NAME dm:OTHER` opens mapped devices through this hook (devices/ may
        # not import dm/); the newest daemon of a process owns it.
        schemes.set_mapped_device_opener(self._open_mapped)

    def _open_mapped(self, name: str, read_only: bool) -> BlockDevice:
        entry = self.mapped.get(name)
        if entry is None:
            raise DeviceError(f"dm:{name}: no mapped device named {name!r}")
        return entry.md.as_block_device(read_only)

    # -- devices ---------------------------------------------------------------------

    async def add_device(self, name: str, uri: str, *, read_only: bool = False) -> DeviceEntry:
        """Open ``uri`` and register it as ``name``."""
        self._check_new_device_name(name)
        device = await self._open_device(name, uri, read_only)
        if name in self.devices:  # raced with another dev-add of the same name
            _close(device)
            raise DeviceError(f"device {name!r} already exists")
        entry = DeviceEntry(name, uri, read_only, device)
        self.devices[name] = entry
        log.info("device %s: added (%s, %d bytes)", name, uri, device.size)
        return entry

    async def _open_device(self, name: str, uri: str, read_only: bool) -> BlockDevice:
        try:
            return await open_uri(name, uri, read_only=read_only, loop=self.loop)
        except DeviceError as exc:
            size = self.offline_sizes.get(uri)
            if size is None or scheme_of(uri) not in ("nbd", "nbd+unix"):
                raise
            log.warning("device %s: %s; restored disconnected (%d bytes), the path checker"
                        " reconnects it", name, exc, size)
            return open_nbd_offline(name, uri, read_only, size, self.loop)

    def table_text(self, table: Table) -> str:
        """The text ``table`` was parsed from (as given to create or load)."""
        use = self._uses.get(id(table))
        return use.text if use is not None else ""

    def _check_new_device_name(self, name: str) -> None:
        if name in self.devices:
            raise DeviceError(f"device {name!r} already exists")
        if name.startswith("dm:") or _INLINE_RE.match(name):
            raise DeviceError(f"bad device name {name!r}: looks like a URI")

    def device(self, name: str) -> DeviceEntry:
        entry = self.devices.get(name)
        if entry is None or entry.inline:
            raise DeviceError(f"no device named {name!r}")
        return entry

    def remove_device(self, name: str) -> None:
        """Close and forget a device no table references."""
        entry = self.device(name)
        if entry.users:
            raise DeviceError(f"device {name!r} is in use by {self._describe_users(entry)}")
        del self.devices[name]
        _close(entry.device)
        log.info("device %s: removed", name)

    def _describe_users(self, entry: DeviceEntry) -> str:
        parts = []
        for table_id, dm in sorted(entry.users.items(), key=lambda kv: kv[1]):
            md = self.mapped[dm].md if dm in self.mapped else None
            slot = "live" if md is not None and id(md.live_table) == table_id else "inactive"
            parts.append(f"{dm!r} ({slot} table)")
        return ", ".join(parts)

    # -- tables ----------------------------------------------------------------------

    async def _parse(self, dm: str, text: str) -> Table:
        """Parse ``text`` for mapped device ``dm``, resolving and recording its devices."""
        inline = await self._open_inline(text)
        use = TableUse(dm, text=text)

        def resolve(name: str) -> BlockDevice:
            if name.startswith("dm:"):
                return self._stack(dm, name[3:], use)
            entry = self.devices.get(name) or inline.get(name)
            if entry is None:
                raise DeviceError(f"no device named {name!r} (dev-add it, or give a URI)")
            use.devices.add(name)
            return entry.device

        try:
            table = parse_table(text, resolve)
            try:
                self._check_no_cycle(dm, use)
            except BaseException:
                table.destroy()
                raise
        except BaseException:
            for handle in use.stacked:
                handle.close()
            for entry in inline.values():
                _close(entry.device)
            raise
        for name, entry in inline.items():
            if name in use.devices:
                self.devices.setdefault(name, entry)
            else:
                _close(entry.device)
        self._uses[id(table)] = use
        for name in use.devices:
            self.devices[name].users[id(table)] = dm
        return table

    async def _open_inline(self, text: str) -> dict[str, DeviceEntry]:
        """Open the URIs a table names that are not open yet (resolution must not wait)."""
        opened: dict[str, DeviceEntry] = {}
        try:
            for token in set(text.split()):
                if token in self.devices or not _INLINE_RE.match(token):
                    continue
                device = await self._open_device(token, token, False)
                opened[token] = DeviceEntry(token, token, False, device, inline=True)
        except BaseException:
            for entry in opened.values():
                _close(entry.device)
            raise
        return opened

    def _stack(self, dm: str, lower: str, use: TableUse) -> BlockDevice:
        if lower == dm:
            raise DeviceError(f"dm:{lower}: a mapped device cannot map onto itself")
        entry = self.mapped.get(lower)
        if entry is None:
            raise DeviceError(f"no mapped device named {lower!r}")
        handle = entry.md.as_block_device()
        use.stacked.append(handle)
        return handle

    def _release_unused_tables(self, dm: str) -> None:
        """Drop the bookkeeping of ``dm``'s tables that are neither live nor inactive."""
        entry = self.mapped.get(dm)
        current = set()
        if entry is not None:
            current = {id(t) for t in (entry.md.live_table, entry.md.inactive_table)
                       if t is not None}
        for table_id, use in list(self._uses.items()):
            if use.dm != dm or table_id in current:
                continue
            del self._uses[table_id]
            for handle in use.stacked:
                handle.close()
            for name in use.devices:
                dev = self.devices.get(name)
                if dev is None:
                    continue
                dev.users.pop(table_id, None)
                if dev.inline and not dev.users:
                    del self.devices[name]
                    _close(dev.device)

    def _discard_unloaded(self, table: Table) -> None:
        """A parsed table that never got loaded: destroy it and release its devices."""
        table.destroy()
        use = self._uses.get(id(table))
        if use is not None:
            self._release_unused_tables(use.dm)

    # -- mapped devices --------------------------------------------------------------

    def mapped_entry(self, name: str) -> MappedEntry:
        entry = self.mapped.get(name)
        if entry is None:
            raise DeviceError(f"no mapped device named {name!r}")
        return entry

    async def create_dm(self, name: str, table: str, *, uuid: str = "",
                        suspended: bool = False) -> None:
        """dmsetup create: a new mapped device with ``table`` live (or waiting).

        The device is invisible until it exists: while its table's devices open (an NBD
        handshake may take seconds) no other command sees it, maps onto it or exports
        it, and a create that fails leaves nothing behind.
        """
        if name in self.mapped:
            raise DeviceError(f"mapped device {name!r} already exists")
        if name in self._creating:
            raise DeviceError(f"mapped device {name!r} is being created")
        if uuid and (any(e.md.uuid == uuid for e in self.mapped.values())
                     or uuid in self._creating.values()):
            raise DeviceError(f"uuid {uuid!r} is already used")
        md = MappedDevice(name, uuid or None)
        self._creating[name] = uuid
        try:
            parsed = await self._parse(name, table)
            try:
                md.create(parsed, suspended=suspended)
            except BaseException:
                self._discard_unloaded(parsed)
                raise
        except BaseException:
            self._release_unused_tables(name)
            raise
        finally:
            del self._creating[name]
        self.mapped[name] = MappedEntry(md, next(self._minors))
        md.add_event_listener(self._on_table_event)
        log.info("mapped device %s: created%s", name, " (suspended)" if suspended else "")

    async def load_dm(self, name: str, table: str) -> None:
        """dmsetup load: ``table`` into the inactive slot (any previous one dropped)."""
        entry = self.mapped_entry(name)
        parsed = await self._parse(name, table)
        try:
            entry.md.load(parsed)
        except BaseException:
            self._discard_unloaded(parsed)
            raise
        self._release_unused_tables(name)

    async def clear_dm(self, name: str) -> None:
        entry = self.mapped_entry(name)
        entry.md.clear()
        self._release_unused_tables(name)

    async def suspend_dm(self, name: str, *, noflush: bool = False,
                         timeout: float | None = None) -> None:
        md = self.mapped_entry(name).md
        try:
            await md.suspend(noflush=noflush, timeout=timeout)
        except TimeoutError:
            raise DeviceError(f"suspend of {name!r} timed out after {timeout}s;"
                              " it was undone and the device is ACTIVE again") from None
        self.events.emit("DM_SUSPENDED", {"name": name, "noflush": noflush})

    async def resume_dm(self, name: str) -> None:
        entry = self.mapped_entry(name)
        md = entry.md
        # Linux makes a resume of an active device a no-op; a control plane that asked
        # for one has lost track of the state, so it is told.
        if md.state is DeviceState.ACTIVE and not (md.inactive_table is not None
                                                    and md.live_table is None):
            raise StateError("resume", md.state.value, DeviceState.SUSPENDED.value)
        await md.resume()
        self._release_unused_tables(name)
        self.events.emit("DM_RESUMED", {"name": name})
        # a resume may bind a table of another size (dm's resize): the guests see it
        for export in self.exports.values():
            if export.dm == name:
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
        exported = [e.id for e in self.exports.values() if e.dm == name]
        if exported and not force:
            raise DeviceError(f"mapped device {name!r} is exported by"
                              f" {', '.join(map(repr, exported))}; export-del first")
        users = self._users_of(name)
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
        del self.mapped[name]
        self._release_unused_tables(name)
        log.info("mapped device %s: removed", name)

    # -- references between mapped devices -----------------------------------------------

    def _lowers_of_use(self, use: TableUse) -> set[str]:
        """The mapped devices one table maps onto: through ``dm:`` or a device
        registered as ``dm:NAME``."""
        lowers = {h.md.name for h in use.stacked}
        for dev in use.devices:
            entry = self.devices.get(dev)
            if entry is not None and isinstance(entry.device, MappedBlockDevice):
                lowers.add(entry.device.md.name)
        return lowers

    def _lowers(self, dm: str) -> set[str]:
        """What every table of ``dm`` (live, inactive, being loaded) maps onto."""
        out: set[str] = set()
        for use in self._uses.values():
            if use.dm == dm:
                out |= self._lowers_of_use(use)
        return out

    def _users_of(self, dm: str) -> list[str]:
        """Who holds mapped device ``dm``: tables of other mapped devices (also ones
        being created) and devices registered as ``dm:`` of it; for messages."""
        tables = sorted({u.dm for u in self._uses.values()
                         if u.dm != dm and dm in self._lowers_of_use(u)})
        devices = sorted(e.name for e in self.devices.values()
                         if isinstance(e.device, MappedBlockDevice)
                         and e.device.md.name == dm)
        return ([f"the table of {t!r}" for t in tables]
                + [f"device {d!r} (dm:{dm})" for d in devices])

    def _check_no_cycle(self, dm: str, use: TableUse) -> None:
        """Refuse a table of ``dm`` that would map, however indirectly, onto ``dm``."""
        for lower in sorted(self._lowers_of_use(use)):
            path = self._path_to(lower, dm, [dm, lower])
            if path is not None:
                raise DeviceError(f"table of {dm!r} would make a stacking cycle:"
                                  f" {' -> '.join(path)}")

    def _path_to(self, start: str, goal: str, path: list[str]) -> list[str] | None:
        if start == goal:
            return path
        seen = {start}
        stack = [(start, path)]
        while stack:
            node, trail = stack.pop()
            for nxt in sorted(self._lowers(node)):
                if nxt == goal:
                    return [*trail, nxt]
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, [*trail, nxt]))
        return None

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
            read_only=False, read_ahead=READ_AHEAD, major=DM_MAJOR, minor=entry.minor,
            targets=info.target_count, size_sectors=info.size_sectors, stats=md.stats())

    def _on_table_event(self, name: str, event_nr: int, event: TableEvent) -> None:
        self.events.emit("DM_EVENT", {"name": name, "event-nr": event_nr,
                                      "reason": event.reason})
        path_event = PATH_EVENTS.get(event.kind)
        if path_event is not None:
            self.events.emit(path_event, {"name": name, "dev": event.dev})

    # -- exports ---------------------------------------------------------------------

    async def add_export(self, export_id: str, dm: str, socket: str, *, num_queues: int = 1,
                         writable: bool = True, serial: str = "") -> ExportEntry:
        """Serve mapped device ``dm`` on a vhost-user-blk socket at ``socket``."""
        if export_id in self.exports:
            raise DeviceError(f"export {export_id!r} already exists")
        md = self.mapped_entry(dm).md
        path = Path(socket)
        for other in self.exports.values():
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
            loop=self.loop, on_connected=self._on_export_connected,
            on_disconnected=self._on_export_disconnected,
            on_resubmit=self._on_export_resubmit, listener=listener)
        export.start()
        if listener is not None:
            del self.listeners[listener.fileno()]
        md.open()
        entry = ExportEntry(export_id, dm, path, num_queues, writable, serial, export)
        self.exports[export_id] = entry
        log.info("export %s: %s on %s", export_id, dm, path)
        return entry

    async def del_export(self, export_id: str, *, force: bool = False) -> None:
        """Stop an export; refused while a guest is attached unless ``force``."""
        entry = self.exports.get(export_id)
        if entry is None:
            raise DeviceError(f"no export named {export_id!r}")
        if entry.connected and not force:
            raise DeviceError(f"export {export_id!r} has a guest attached"
                              " (device_del it first, or force)")
        del self.exports[export_id]
        try:
            await entry.export.close()
        finally:
            mapped = self.mapped.get(entry.dm)
            if mapped is not None:
                mapped.md.close()
        log.info("export %s: removed", export_id)

    def _on_export_connected(self, export_id: str) -> None:
        self.events.emit("EXPORT_CONNECTED", {"id": export_id})

    def _on_export_resubmit(self, export_id: str, queue: int, count: int) -> None:
        self.events.emit("EXPORT_RESUBMITTED", {"id": export_id, "queue": queue,
                                                "count": count})

    def _on_export_disconnected(self, export_id: str) -> None:
        self.events.emit("EXPORT_DISCONNECTED", {"id": export_id})

    # -- shutdown --------------------------------------------------------------------

    async def drain(self, timeout: float | None = 30.0) -> None:
        """Stop popping requests from every guest and wait for those in flight, then
        drop the guests (a ``reconnect=1`` guest comes back to the next daemon, which
        resubmits whatever did not complete within ``timeout``)."""
        self.draining = True
        self.quit_requested.set()
        waiting = self.shutdown_status()
        log.info("%s", waiting)
        exports = [e.export for e in self.exports.values()]
        await asyncio.gather(*(e.close(timeout) for e in exports), return_exceptions=True)
        log.info("drained")

    def shutdown_status(self) -> str:
        """What a shutdown is waiting for, in words (a second SIGTERM or quit says it)."""
        busy = []
        for e in self.exports.values():
            n = e.export.in_flight
            if not n:
                continue
            md = self.mapped.get(e.dm)
            where = ""
            if md is not None:
                info = md.md.info()
                where = (f" (mapped device {e.dm!r} {info.state.value}, {info.deferred}"
                         f" deferred, {info.in_flight} in its targets)")
            busy.append(f"{n} request(s) in flight on export {e.id!r}{where}")
        if not busy:
            return "draining: no request in flight, closing"
        return "draining: waiting for " + "; ".join(busy)

    async def close(self) -> None:
        """Close everything: exports, then mapped devices (upper first), then devices."""
        for export_id in list(self.exports):
            try:
                await self.del_export(export_id, force=True)
            except Exception:
                log.exception("closing export %s failed", export_id)
        while self.mapped:
            # Upper devices first; devices registered as dm: go with the devices.
            held = {low for n in self.mapped for low in self._lowers(n)}
            name = next((n for n in reversed(self.mapped) if n not in held),
                        next(iter(self.mapped)))
            try:
                await self._destroy_dm(name, force=True)
            except Exception:
                log.exception("removing mapped device %s failed", name)
                self.mapped.pop(name, None)
                self._release_unused_tables(name)
        for name in list(self.devices):
            _close(self.devices.pop(name).device)
        if schemes.mapped_device_opener() == self._open_mapped:
            schemes.set_mapped_device_opener(None)


def _close(device: object) -> None:
    if isinstance(device, Closable):
        try:
            device.close()
        except Exception:
            log.exception("closing %r failed", device)
