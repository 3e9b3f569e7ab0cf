"""Which devices exist and who holds them: registered devices, mapped devices, and the
references that tables make between them.

Tables name devices three ways: a name registered with ``add_device``, ``dm:NAME`` (a
mapped device of this daemon, stacked), or an inline URI (``file:/x``, ``null:1G``...),
which is opened for that table and closed with its last table. Each parsed table's
references are kept with the table itself (never its ``id()``, which a later table can
reuse), so a device is not removed while a table holds it, a mapped device not while
another maps onto it, and no table may make a stacking cycle.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from .blockio import BlockDevice
from .devices.nbd import open_nbd_offline
from .devices.schemes import mapped_device_name, open_uri
from .devices.uri import scheme_of
from .dm import MappedBlockDevice, MappedDevice, Table, parse_table
from .errors import DeviceError

log = logging.getLogger(__name__)

INLINE_SCHEMES = ("file", "null", "mem", "nbd", "nbd+unix")
_INLINE_RE = re.compile("^(" + "|".join(map(re.escape, INLINE_SCHEMES)) + r"):\S+$")


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
    users: dict[Table, str] = field(default_factory=dict)
    """table -> the mapped device's name, one entry per table using the device."""

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


@runtime_checkable
class Closable(Protocol):
    def close(self) -> None: ...


class DeviceRegistry:
    """Registered devices, mapped devices and the references between them."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.devices: dict[str, DeviceEntry] = {}
        self.mapped: dict[str, MappedEntry] = {}
        self.offline_sizes: dict[str, int] = {}
        """URI -> size in bytes of NBD devices that may open disconnected (a restore
        sets it: a path whose server is down comes back failed, not as an error)."""
        self._uses: dict[Table, TableUse] = {}
        self._creating: dict[str, str] = {}
        """Mapped devices being created: name -> uuid. Invisible until they exist, but
        their names (and uuids) are taken."""
        self._minors = itertools.count()

    # -- registered devices ----------------------------------------------------------

    async def add_device(self, name: str, uri: str, *, read_only: bool = False) -> DeviceEntry:
        """Open ``uri`` and register it as ``name``."""
        self._check_new_device_name(name)
        device = await self._open_device(name, uri, read_only)
        if name in self.devices:  # raced with another dev-add of the same name
            close_device(device)
            raise DeviceError(f"device {name!r} already exists")
        entry = DeviceEntry(name, uri, read_only, device)
        self.devices[name] = entry
        log.info("device %s: added (%s, %d bytes)", name, uri, device.size)
        return entry

    async def _open_device(self, name: str, uri: str, read_only: bool) -> BlockDevice:
        if scheme_of(uri) == "dm":
            # Devices sit below dm: the registry, which has the mapped devices, opens these.
            return self.open_mapped(mapped_device_name(uri), read_only)
        try:
            return await open_uri(name, uri, read_only=read_only, loop=self.loop)
        except DeviceError as exc:
            size = self.offline_sizes.get(uri)
            if size is None or scheme_of(uri) not in ("nbd", "nbd+unix"):
                raise
            log.warning("device %s: %s; restored disconnected (%d bytes), the path checker"
                        " reconnects it", name, exc, size)
            return open_nbd_offline(name, uri, read_only, size, self.loop)

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
        close_device(entry.device)
        log.info("device %s: removed", name)

    def _describe_users(self, entry: DeviceEntry) -> str:
        parts = []
        for table, dm in sorted(entry.users.items(), key=lambda kv: kv[1]):
            md = self.mapped[dm].md if dm in self.mapped else None
            slot = "live" if md is not None and md.live_table is table else "inactive"
            parts.append(f"{dm!r} ({slot} table)")
        return ", ".join(parts)

    # -- mapped devices --------------------------------------------------------------

    def mapped_entry(self, name: str) -> MappedEntry:
        entry = self.mapped.get(name)
        if entry is None:
            raise DeviceError(f"no mapped device named {name!r}")
        return entry

    def open_mapped(self, name: str, read_only: bool) -> BlockDevice:
        """Mapped device ``name`` as a BlockDevice (``dev-add NAME dm:OTHER``)."""
        entry = self.mapped.get(name)
        if entry is None:
            raise DeviceError(f"dm:{name}: no mapped device named {name!r}")
        return entry.md.as_block_device(read_only)

    @contextmanager
    def creating(self, name: str, uuid: str) -> Iterator[None]:
        """Hold ``name`` (and ``uuid``) while a mapped device is being created, so that
        no other create takes them; the device itself stays invisible until added."""
        if name in self.mapped:
            raise DeviceError(f"mapped device {name!r} already exists")
        if name in self._creating:
            raise DeviceError(f"mapped device {name!r} is being created")
        if uuid and (any(e.md.uuid == uuid for e in self.mapped.values())
                     or uuid in self._creating.values()):
            raise DeviceError(f"uuid {uuid!r} is already used")
        self._creating[name] = uuid
        try:
            yield
        finally:
            del self._creating[name]

    def add_mapped(self, md: MappedDevice) -> MappedEntry:
        """Make a created mapped device visible, with the next minor number."""
        entry = self.mapped[md.name] = MappedEntry(md, next(self._minors))
        return entry

    def forget_mapped(self, name: str) -> None:
        """Drop a removed mapped device and whatever its tables held."""
        self.mapped.pop(name, None)
        self.release_unused_tables(name)

    # -- tables ----------------------------------------------------------------------

    async def parse(self, dm: str, text: str) -> Table:
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
                close_device(entry.device)
            raise
        for name, entry in inline.items():
            if name in use.devices:
                self.devices.setdefault(name, entry)
            else:
                close_device(entry.device)
        self._uses[table] = use
        for name in use.devices:
            self.devices[name].users[table] = dm
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
                close_device(entry.device)
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

    def table_text(self, table: Table) -> str:
        """The text ``table`` was parsed from (as given to create or load)."""
        use = self._uses.get(table)
        return use.text if use is not None else ""

    def release_unused_tables(self, dm: str) -> None:
        """Drop the bookkeeping of ``dm``'s tables that are neither live nor inactive."""
        entry = self.mapped.get(dm)
        current: list[Table] = []
        if entry is not None:
            current = [t for t in (entry.md.live_table, entry.md.inactive_table)
                       if t is not None]
        for table, use in list(self._uses.items()):
            if use.dm != dm or any(table is t for t in current):
                continue
            del self._uses[table]
            for handle in use.stacked:
                handle.close()
            for name in use.devices:
                dev = self.devices.get(name)
                if dev is None:
                    continue
                dev.users.pop(table, None)
                if dev.inline and not dev.users:
                    del self.devices[name]
                    close_device(dev.device)

    def discard_unloaded(self, table: Table) -> None:
        """A parsed table that never got loaded: destroy it and release its devices."""
        table.destroy()
        use = self._uses.get(table)
        if use is not None:
            self.release_unused_tables(use.dm)

    # -- references between mapped devices -------------------------------------------

    def _lowers_of_use(self, use: TableUse) -> set[str]:
        """The mapped devices one table maps onto: through ``dm:`` or a device
        registered as ``dm:NAME``."""
        lowers = {h.md.name for h in use.stacked}
        for dev in use.devices:
            entry = self.devices.get(dev)
            if entry is not None and isinstance(entry.device, MappedBlockDevice):
                lowers.add(entry.device.md.name)
        return lowers

    def lowers(self, dm: str) -> set[str]:
        """What every table of ``dm`` (live, inactive, being loaded) maps onto."""
        out: set[str] = set()
        for use in self._uses.values():
            if use.dm == dm:
                out |= self._lowers_of_use(use)
        return out

    def users_of(self, dm: str) -> list[str]:
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
            for nxt in sorted(self.lowers(node)):
                if nxt == goal:
                    return [*trail, nxt]
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, [*trail, nxt]))
        return None

    def next_to_remove(self) -> str:
        """A mapped device no other one maps onto (the newest first), for closing
        everything upper first; any one if a bug left a cycle."""
        held = {low for n in self.mapped for low in self.lowers(n)}
        return next((n for n in reversed(self.mapped) if n not in held),
                    next(iter(self.mapped)))

    def close_devices(self) -> None:
        """Close every registered device (the mapped devices are gone by now)."""
        for name in list(self.devices):
            close_device(self.devices.pop(name).device)


def close_device(device: object) -> None:
    """Close a device that has a ``close``, logging (not raising) its failure."""
    if isinstance(device, Closable):
        try:
            device.close()
        except Exception:
            log.exception("closing %r failed", device)
