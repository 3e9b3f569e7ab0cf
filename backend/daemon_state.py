"""The daemon's state as a JSON document, and the daemon rebuilt from one.

What survives a restart (DESIGN.md, "Restart without the guest noticing"): registered
devices, mapped devices with their live table, inactive table and ACTIVE/SUSPENDED
state, and exports (socket, queues, writable, serial). Tables are kept as the text they
were given, so a restore parses them exactly as the commands that built them did.
Event numbers, open counts, path states and connections are not state: they are rebuilt
by what happens after the restart (the path checker, the guests reconnecting).

A device is only recorded once it has a table: a ``dm-create`` still parsing its table
has not been acknowledged, so a crash must not bring it back.
"""

from __future__ import annotations

import logging
from typing import Any

from .daemon import Daemon
from .dm.mapped_device import DeviceState
from .errors import JournalError, VudmError

log = logging.getLogger(__name__)


def snapshot(daemon: Daemon) -> dict[str, Any]:
    """Everything a restore needs, as JSON-able data, in creation order."""
    devices = [{"name": e.name, "uri": e.uri, "read-only": e.read_only,
                "size": e.device.size}
               for e in daemon.devices.values() if not e.inline]
    sizes = {e.uri: e.device.size for e in daemon.devices.values()}
    mapped = []
    for name, entry in daemon.mapped.items():
        md = entry.md
        live, inactive = md.live_table, md.inactive_table
        if live is None and inactive is None:
            continue
        mapped.append({
            "name": name, "uuid": md.uuid or "",
            "state": "SUSPENDED" if md.state is DeviceState.SUSPENDED else "ACTIVE",
            "live": daemon.table_text(live) if live is not None else None,
            "inactive": daemon.table_text(inactive) if inactive is not None else None,
        })
    exports = [{"id": e.id, "dm": e.dm, "socket": str(e.socket),
                "num-queues": e.num_queues, "writable": e.writable, "serial": e.serial}
               for e in daemon.exports.values()]
    return {"devices": devices, "mapped": mapped, "exports": exports, "sizes": sizes}


async def restore(daemon: Daemon, state: dict[str, Any]) -> None:
    """Rebuild ``state`` in an empty daemon; JournalError names the entry that failed.

    NBD devices whose server is down open disconnected (their size is recorded), so a
    multipath table over them loads and its paths fail at the first I/O or check.
    """
    daemon.registry.offline_sizes = {str(k): int(v) for k, v in state.get("sizes", {}).items()}
    try:
        for dev in state.get("devices", []):
            await _step(f"device {dev['name']!r}", daemon.add_device(
                dev["name"], dev["uri"], read_only=bool(dev["read-only"])))
        for m in state.get("mapped", []):
            await _restore_mapped(daemon, m)
        for e in state.get("exports", []):
            await _step(f"export {e['id']!r}", daemon.add_export(
                e["id"], e["dm"], e["socket"], num_queues=int(e["num-queues"]),
                writable=bool(e["writable"]), serial=str(e["serial"])))
    finally:
        daemon.registry.offline_sizes = {}
    log.info("state restored: %d devices, %d mapped devices, %d exports",
             len(state.get("devices", [])), len(state.get("mapped", [])),
             len(state.get("exports", [])))


async def _restore_mapped(daemon: Daemon, m: dict[str, Any]) -> None:
    name, live, inactive = m["name"], m["live"], m["inactive"]
    what = f"mapped device {name!r}"
    suspended = m["state"] == "SUSPENDED"
    if live is None:
        # Created suspended and never resumed: the table waits in the inactive slot.
        await _step(what, daemon.create_dm(name, inactive, uuid=m["uuid"], suspended=True))
        return
    await _step(what, daemon.create_dm(name, live, uuid=m["uuid"]))
    if suspended:
        # Nothing is in flight yet (no export serves it): a noflush suspend only blocks
        # I/O, so what the guests resubmit waits on the deferred list until resume.
        await _step(what, daemon.suspend_dm(name, noflush=True))
    if inactive is not None:
        await _step(what, daemon.load_dm(name, inactive))


async def _step(what: str, coro: Any) -> None:
    try:
        await coro
    except (VudmError, KeyError, TypeError, ValueError) as e:
        raise JournalError(f"cannot restore {what}: {e}") from e
