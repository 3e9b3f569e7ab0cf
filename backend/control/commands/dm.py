"""Mapped-device commands: dm-create/load/clear/suspend/resume/message/remove/wait,
query-dm. dmsetup's verbs, with QAPI names."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..dmsetup_format import DM_MAJOR, READ_AHEAD
from ..schema import Arg, JSONType
from ..validators import ascii_text, name, uuid
from .registry import command

if TYPE_CHECKING:
    from ...daemon import Daemon
    from ...mapped_devices import MappedInfo

STR, INT, BOOL, NUM = JSONType.STR, JSONType.INT, JSONType.BOOL, JSONType.NUMBER


def describe_dm(info: MappedInfo) -> dict[str, object]:
    """One query-dm entry: what dmsetup info/table/status print, as JSON, plus the
    evidence counters (``stats``). Major and read-ahead are the formatter's display
    values: there is no kernel device to take them from."""
    return {
        "name": info.name,
        "uuid": info.uuid,
        "state": info.state,
        "live-table": info.live_table,
        "inactive-table": info.inactive_table,
        "open-count": info.open_count,
        "event-nr": info.event_nr,
        "table": info.table,
        "status": info.status,
        "info": {
            "read-only": info.read_only,
            "read-ahead": READ_AHEAD,
            "major": DM_MAJOR,
            "minor": info.minor,
            "targets": info.targets,
            "size": info.size_sectors,
            "inactive": info.inactive,
        },
        "stats": info.stats,
    }


@command("dm-create", Arg("name", STR, check=name), Arg("table", STR, check=ascii_text),
         Arg("uuid", STR, optional=True, default="", check=uuid),
         Arg("suspended", BOOL, optional=True, default=False))
async def dm_create(daemon: Daemon, args: dict[str, Any]) -> object:
    """Create a mapped device from a table (dmsetup lines); resumed unless suspended."""
    await daemon.create_dm(args["name"], args["table"], uuid=args["uuid"],
                           suspended=args["suspended"])
    return {}


@command("dm-load", Arg("name", STR, check=name), Arg("table", STR, check=ascii_text))
async def dm_load(daemon: Daemon, args: dict[str, Any]) -> object:
    """Load a table into the inactive slot; dm-resume swaps it in."""
    await daemon.load_dm(args["name"], args["table"])
    return {}


@command("dm-clear", Arg("name", STR, check=name))
async def dm_clear(daemon: Daemon, args: dict[str, Any]) -> object:
    """Drop the inactive table."""
    await daemon.clear_dm(args["name"])
    return {}


@command("dm-suspend", Arg("name", STR, check=name),
         Arg("noflush", BOOL, optional=True, default=False),
         Arg("timeout", NUM, optional=True, minimum=0))
async def dm_suspend(daemon: Daemon, args: dict[str, Any]) -> object:
    """Suspend: block new I/O and wait for in-flight I/O (noflush: push it back)."""
    await daemon.suspend_dm(args["name"], noflush=args["noflush"], timeout=args["timeout"])
    return {}


@command("dm-resume", Arg("name", STR, check=name),
         Arg("noflush", BOOL, optional=True, default=False))
async def dm_resume(daemon: Daemon, args: dict[str, Any]) -> object:
    """Resume, swapping in the inactive table if there is one (an ACTIVE device with one
    is suspended first, noflush if asked; without one it is left alone), as Linux does."""
    await daemon.resume_dm(args["name"], noflush=args["noflush"])
    return {}


@command("dm-message", Arg("name", STR, check=name), Arg("sector", INT, minimum=0),
         Arg("message", STR, check=ascii_text))
async def dm_message(daemon: Daemon, args: dict[str, Any]) -> object:
    """Send a message to the target at ``sector`` (fail_path, addbadblock, ...)."""
    reply = await daemon.message_dm(args["name"], args["sector"], args["message"])
    return {"reply": reply}


@command("dm-remove", Arg("name", STR, check=name),
         Arg("force", BOOL, optional=True, default=False))
async def dm_remove(daemon: Daemon, args: dict[str, Any]) -> object:
    """Remove a mapped device; refused while open or exported unless forced."""
    await daemon.remove_dm(args["name"], force=args["force"])
    return {}


@command("dm-wait", Arg("name", STR, check=name), Arg("event-nr", INT, minimum=0),
         Arg("timeout", NUM, optional=True, minimum=0))
async def dm_wait(daemon: Daemon, args: dict[str, Any]) -> object:
    """Return once the device's event number is above ``event-nr``."""
    nr = await daemon.wait_dm(args["name"], args["event_nr"], timeout=args["timeout"])
    return {"event-nr": nr}


@command("query-dm", Arg("name", STR, optional=True, check=name))
async def query_dm(daemon: Daemon, args: dict[str, Any]) -> object:
    """Mapped devices (all, or the one named) with their info, table and status."""
    names = [args["name"]] if args["name"] is not None else list(daemon.mapped)
    return [describe_dm(daemon.dm_info(n)) for n in names]
