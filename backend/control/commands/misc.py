"""The monitor's own commands: query-version, query-commands, quit."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...errors import ControlError
from ..version import VERSION, version_triple
from .registry import REGISTRY, command

if TYPE_CHECKING:
    from ...daemon import Daemon


@command("query-version")
async def query_version(daemon: Daemon, args: dict[str, Any]) -> object:
    """vudm's version, in the shape of QEMU's query-version."""
    major, minor, micro = version_triple()
    return {"qemu": {"major": major, "minor": minor, "micro": micro},
            "package": f"vudm {VERSION}"}


@command("query-commands")
async def query_commands(daemon: Daemon, args: dict[str, Any]) -> object:
    """Every command the monitor accepts, with its arguments."""
    return [{"name": "qmp_capabilities"}, *(c.describe() for c in REGISTRY)]


@command("quit")
async def quit_daemon(daemon: Daemon, args: dict[str, Any]) -> object:
    """Stop the daemon: drain in-flight I/O, then close exports, mapped devices, devices."""
    if daemon.quit_requested.is_set():
        raise ControlError(daemon.shutdown_status())
    daemon.quit_requested.set()
    return {}
