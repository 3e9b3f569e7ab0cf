"""Device commands: dev-add, dev-remove, query-devs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..schema import Arg, JSONType
from ..validators import name
from .registry import command

if TYPE_CHECKING:
    from ...daemon import Daemon
    from ...device_registry import DeviceEntry

STR, BOOL = JSONType.STR, JSONType.BOOL


def describe_device(entry: DeviceEntry) -> dict[str, object]:
    return {"name": entry.name, "uri": entry.uri, "size": entry.device.size,
            "read-only": entry.read_only, "state": entry.state, "inline": entry.inline,
            "users": sorted(set(entry.users.values()))}


@command("dev-add", Arg("name", STR, check=name), Arg("uri", STR),
         Arg("read-only", BOOL, optional=True, default=False))
async def dev_add(daemon: Daemon, args: dict[str, Any]) -> object:
    """Open a device URI and register it under a name tables can use."""
    await daemon.add_device(args["name"], args["uri"], read_only=args["read_only"])
    return {}


@command("dev-remove", Arg("name", STR, check=name))
async def dev_remove(daemon: Daemon, args: dict[str, Any]) -> object:
    """Close a registered device; refused while a table uses it."""
    daemon.remove_device(args["name"])
    return {}


@command("query-devs")
async def query_devs(daemon: Daemon, args: dict[str, Any]) -> object:
    """Every registered device: name, uri, size in bytes, state."""
    return [describe_device(e) for e in daemon.devices.values()]
