"""Synchronous handles over the async rig parts, for plain (non-async) pytest tests.

Every handle runs its coroutines on one event loop per test worker (:class:`Loop`), the
loop the worker's guest and daemons live on; every call is bounded, so a hang fails the
test instead of stalling the run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from qemu.qmp import QMPClient

from guests.agent import AgentResult
from guests.machine import Guest
from qmp_scenarios.nbd_server import NbdServer
from vudm_testing.daemon import DaemonProcess

T = TypeVar("T")


class Loop:
    """The worker's event loop: ``loop.run(coro)`` runs one coroutine on it, bounded."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 600.0) -> T:
        return self.loop.run_until_complete(asyncio.wait_for(coro, timeout))

    def close(self) -> None:
        self.loop.close()


class Vudm:
    """A running ``vudm serve`` (its own process) and a QMP client of it."""

    def __init__(self, loop: Loop, process: DaemonProcess, client: QMPClient) -> None:
        self.loop = loop
        self.process = process
        self.client = client

    @property
    def qmp_path(self) -> Path:
        return self.process.qmp_path

    def qmp(self, command: str, arguments: dict[str, Any] | None = None) -> Any:
        """Run one QMP command; a refusal raises qemu.qmp's ExecuteError."""
        return self.loop.run(self.client.execute(command, arguments), 120.0)

    def query_dm(self, name: str) -> dict[str, Any]:
        """The device's ``query-dm`` entry (status, tables, and stats where present)."""
        entries = self.qmp("query-dm", {"name": name})
        entry: dict[str, Any] = entries[0]
        return entry


class NbdPath:
    """A real NBD server (qemu-storage-daemon) over an image: a path that dies for real."""

    def __init__(self, loop: Loop, server: NbdServer) -> None:
        self.loop = loop
        self.server = server

    @property
    def name(self) -> str:
        return self.server.name

    @property
    def uri(self) -> str:
        return self.server.uri

    def kill(self) -> None:
        """SIGKILL the server (connections drop mid-I/O) and wait until it is gone."""
        self.loop.run(self.server.kill(), 30.0)

    def restart(self) -> None:
        """Bring a killed server back on the same socket."""
        self.loop.run(self.server.start(), 60.0)


class GuestHandle:
    """The worker's guest, lent to one test: ``attach`` hotplugs an export, ``sh`` runs a
    command through the guest agent. ``guest`` is the async API underneath."""

    def __init__(self, loop: Loop, guest: Guest) -> None:
        self.loop = loop
        self.guest = guest

    def attach(self, disk_id: str, socket: Path | str, num_queues: int = 1) -> str:
        """Hotplug the vhost-user-blk export at ``socket``; the guest's /dev path."""
        return self.loop.run(self.guest.hotplug_vhost_user_blk(disk_id, socket,
                                                               num_queues=num_queues))

    def detach(self, disk_id: str) -> None:
        self.loop.run(self.guest.unplug(disk_id))

    def sh(self, command: str, timeout: float = 120.0) -> AgentResult:
        """Run a shell command in the guest; the result has exit_code, output, stderr."""
        return self.loop.run(self.guest.run(command, timeout), timeout + 30.0)

    def io_errors(self) -> list[str]:
        """The guest kernel's I/O error lines since this test got the guest."""
        return self.loop.run(self.guest.kernel_io_errors())
