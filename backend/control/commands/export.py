"""Export commands: export-add, export-del, query-exports (vhost-user-blk sockets)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...limits import MAX_NUM_QUEUES
from ..schema import Arg, JSONType
from ..validators import name, serial, socket_path
from .registry import command

if TYPE_CHECKING:
    from ...daemon import Daemon
    from ...exports import ExportEntry

STR, INT, BOOL = JSONType.STR, JSONType.INT, JSONType.BOOL


def describe_export(entry: ExportEntry) -> dict[str, object]:
    return {"id": entry.id, "dm": entry.dm, "socket": str(entry.socket),
            "connected": entry.connected, "num-queues": entry.num_queues,
            "writable": entry.writable, "serial": entry.serial,
            "resubmitted": entry.export.resubmitted,
            "queue-ios": entry.export.queue_ios,
            "config-changes": entry.export.config_changes}


@command("export-add", Arg("id", STR, check=name), Arg("dm", STR, check=name),
         Arg("socket", STR, check=socket_path),
         Arg("num-queues", INT, optional=True, default=1, minimum=1,
             maximum=MAX_NUM_QUEUES),
         Arg("writable", BOOL, optional=True, default=True),
         Arg("serial", STR, optional=True, default="", check=serial))
async def export_add(daemon: Daemon, args: dict[str, Any]) -> object:
    """Serve a mapped device on a vhost-user-blk socket a guest can hotplug."""
    await daemon.add_export(args["id"], args["dm"], args["socket"],
                            num_queues=args["num_queues"], writable=args["writable"],
                            serial=args["serial"])
    return {}


@command("export-del", Arg("id", STR, check=name), Arg("force", BOOL, optional=True, default=False))
async def export_del(daemon: Daemon, args: dict[str, Any]) -> object:
    """Stop an export; refused while a guest is connected unless forced."""
    await daemon.del_export(args["id"], force=args["force"])
    return {}


@command("query-exports")
async def query_exports(daemon: Daemon, args: dict[str, Any]) -> object:
    """Every export: id, mapped device, socket, whether a guest is connected."""
    return [describe_export(e) for e in daemon.exports.values()]
