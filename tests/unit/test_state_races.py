"""Races between control commands on one mapped device, through QMP on an in-process
daemon: the device decides them (MappedDevice's require guard), the daemon only asks."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from daemon_in_process import in_process
from dm.support import targets
from qemu.qmp import QMPClient

from vudm_testing.daemon import error_of, run


async def one_dm(client: QMPClient, name: str) -> dict[str, Any]:
    (entry,) = await client.execute("query-dm", {"name": name})
    assert isinstance(entry, dict)
    return entry


def test_races_with_a_suspend_are_decided_by_the_device(tmp_path: Path) -> None:
    """While a suspend waits in a target's presuspend, a second dm-suspend and a dm-resume are
    refused at once by the device (the daemon neither queues them nor decides); a forced
    dm-remove of the exported device is refused before its export is touched; dm-load is
    allowed. The suspend then completes and the loaded table goes live at resume."""
    async def main() -> None:
        async with in_process(tmp_path) as (server, c):
            await c.execute("dm-create", {"name": "v", "table": "0 64 test-hold null:1M 0"})
            await c.execute("export-add", {"id": "e", "dm": "v",
                                           "socket": str(tmp_path / "e.sock")})
            (hold,) = targets(server.daemon.mapped["v"].md)
            started, proceed = asyncio.Event(), asyncio.Event()

            async def presuspend() -> None:  # the suspend waits here until told
                started.set()
                await proceed.wait()

            hold.presuspend_hook = presuspend
            suspend = asyncio.create_task(c.execute("dm-suspend", {"name": "v"}))
            await asyncio.wait_for(started.wait(), 5)
            assert await error_of(c, "dm-suspend", {"name": "v"}) == (
                "GenericError", "dm-suspend: device 'v' is SUSPENDING, needs ACTIVE")
            assert await error_of(c, "dm-resume", {"name": "v"}) == (
                "GenericError",
                "dm-resume: device 'v' is SUSPENDING, needs ACTIVE or SUSPENDED")
            assert await error_of(c, "dm-remove", {"name": "v", "force": True}) == (
                "GenericError",
                "dm-remove: device 'v' is SUSPENDING, needs ACTIVE or SUSPENDED")
            assert [e["id"] for e in await c.execute("query-exports")] == ["e"]
            await c.execute("dm-load", {"name": "v", "table": "0 64 zero"})
            assert not suspend.done()
            proceed.set()
            assert await suspend == {}
            await c.execute("dm-resume", {"name": "v"})
            assert (await one_dm(c, "v"))["table"] == "0 64 zero"

    run(main())
