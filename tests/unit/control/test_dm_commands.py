"""Every device, mapped-device and export command through qemu.qmp, in-process daemon."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from daemon_in_process import in_process
from qemu.qmp import QMPClient

from backend.dm import TableEvent, TableEventKind
from vudm_testing.daemon import error_of, run

MiB = 1 << 20


def image(tmp: Path, name: str, size: int = 4 * MiB) -> Path:
    path = tmp / name
    with path.open("wb") as f:
        f.truncate(size)
    return path


async def next_event(listener: Any, name: str) -> dict[str, Any]:
    """The next event called ``name`` (others are skipped), within 5 s."""
    async def find() -> dict[str, Any]:
        while True:
            ev: dict[str, Any] = await listener.get()
            if ev["event"] == name:
                return ev

    return await asyncio.wait_for(find(), 5)


async def one_dm(client: QMPClient, name: str) -> dict[str, Any]:
    (entry,) = await client.execute("query-dm", {"name": name})
    assert isinstance(entry, dict)
    return entry


def test_device_commands(tmp_path: Path) -> None:
    disk = image(tmp_path, "d0.img")

    async def main() -> None:
        async with in_process(tmp_path) as (_, c):
            assert await c.execute("dev-add", {"name": "d0", "uri": f"file:{disk}"}) == {}
            assert await c.execute("dev-add", {"name": "ro", "uri": f"file:{disk}",
                                               "read-only": True}) == {}
            devs = {d["name"]: d for d in await c.execute("query-devs")}
            assert devs["d0"]["size"] == 4 * MiB and devs["d0"]["uri"] == f"file:{disk}"
            assert devs["d0"]["state"] == "ok" and devs["ro"]["read-only"] is True
            assert await c.execute("dev-remove", {"name": "ro"}) == {}
            assert [d["name"] for d in await c.execute("query-devs")] == ["d0"]

    run(main())


def test_mapped_device_lifecycle_with_events(tmp_path: Path) -> None:
    a, b = image(tmp_path, "a.img"), image(tmp_path, "b.img")

    async def main() -> None:
        async with in_process(tmp_path) as (_, c):
            await c.execute("dev-add", {"name": "a", "uri": f"file:{a}"})
            await c.execute("dev-add", {"name": "b", "uri": f"file:{b}"})
            await c.execute("dm-create", {"name": "v", "table": "0 2048 linear a 0\n"
                                          "2048 2048 linear b 16", "uuid": "VUDM-v"})
            v = await one_dm(c, "v")
            assert v["state"] == "ACTIVE" and v["uuid"] == "VUDM-v"
            assert v["live-table"] and not v["inactive-table"]
            assert v["table"] == "0 2048 linear a 0\n2048 2048 linear b 16"
            assert v["info"]["targets"] == 2 and v["info"]["size"] == 4096
            devs = {d["name"]: d["users"] for d in await c.execute("query-devs")}
            assert devs == {"a": ["v"], "b": ["v"]}

            with c.listener() as events:
                await c.execute("dm-suspend", {"name": "v", "noflush": True, "timeout": 5})
                ev = await next_event(events, "DM_SUSPENDED")
                assert ev["data"] == {"name": "v", "noflush": True}
                assert (await one_dm(c, "v"))["state"] == "SUSPENDED"

                await c.execute("dm-load", {"name": "v", "table": "0 4096 linear b 0"})
                v = await one_dm(c, "v")
                assert v["inactive-table"] and v["info"]["inactive"] == "0 4096 linear b 0"
                await c.execute("dm-clear", {"name": "v"})
                assert not (await one_dm(c, "v"))["inactive-table"]
                await c.execute("dm-load", {"name": "v", "table": "0 4096 linear b 0"})
                await c.execute("dm-resume", {"name": "v"})
                ev = await next_event(events, "DM_RESUMED")
                assert ev["data"] == {"name": "v"}
            v = await one_dm(c, "v")
            assert v["state"] == "ACTIVE" and v["table"] == "0 4096 linear b 0"
            # The old table let go of 'a': it can be removed now.
            await c.execute("dev-remove", {"name": "a"})

            await c.execute("dm-suspend", {"name": "v"})
            await c.execute("dm-resume", {"name": "v"})
            await c.execute("dm-remove", {"name": "v"})
            assert await c.execute("query-dm") == []
            await c.execute("dev-remove", {"name": "b"})

    run(main())


def test_table_events_and_wait(tmp_path: Path) -> None:
    async def main() -> None:
        async with in_process(tmp_path) as (server, c):
            await c.execute("dm-create", {"name": "z", "table": "0 100 zero"})
            md = server.daemon.mapped["z"].md
            assert await error_of(c, "dm-wait", {"name": "z", "event-nr": 0,
                                                 "timeout": 0.05}) == (
                "GenericError", "dm-wait: event number still 0 after 0.05s")
            with c.listener() as events:
                waiter = asyncio.ensure_future(
                    c.execute("dm-wait", {"name": "z", "event-nr": 0, "timeout": 10}))
                # same client, while the wait is outstanding
                assert (await one_dm(c, "z"))["event-nr"] == 0
                md.raise_table_event(TableEvent(TableEventKind.PATH_FAILED, "p1"))
                assert await waiter == {"event-nr": 1}
                ev = await next_event(events, "DM_EVENT")
                assert ev["data"] == {"name": "z", "event-nr": 1, "reason": "path failed: p1"}
                ev = await next_event(events, "PATH_FAILED")
                assert ev["data"] == {"name": "z", "dev": "p1"}
                md.raise_table_event(TableEvent(TableEventKind.PATH_REINSTATED, "p1"))
                ev = await next_event(events, "PATH_REINSTATED")
                assert ev["data"] == {"name": "z", "dev": "p1"}
            assert await c.execute("dm-wait", {"name": "z", "event-nr": 0}) == {"event-nr": 2}

    run(main())


def test_message_reply_and_refusal(tmp_path: Path) -> None:
    async def main() -> None:
        async with in_process(tmp_path) as (_, c):
            await c.execute("dm-create", {"name": "e", "table": "0 8 error"})
            cls, desc = await error_of(c, "dm-message",
                                       {"name": "e", "sector": 0, "message": "hello"})
            assert cls == "GenericError"
            assert desc.startswith("dm-message: error: target does not accept messages")

    run(main())


def test_inline_uris_and_stacking(tmp_path: Path) -> None:
    disk = image(tmp_path, "i.img")

    async def main() -> None:
        async with in_process(tmp_path) as (_, c):
            await c.execute("dm-create", {"name": "low", "table": f"0 8192 linear file:{disk} 0"})
            (inline,) = await c.execute("query-devs")
            assert inline["inline"] and inline["users"] == ["low"]
            await c.execute("dm-create", {"name": "top", "table": "0 4096 linear dm:low 4096"})
            assert (await one_dm(c, "low"))["open-count"] == 1
            _, desc = await error_of(c, "dm-remove", {"name": "low"})
            assert desc == "dm-remove: mapped device 'low' is used by the table of 'top'"
            await c.execute("dm-remove", {"name": "top"})
            assert (await one_dm(c, "low"))["open-count"] == 0
            await c.execute("dm-remove", {"name": "low"})
            assert await c.execute("query-devs") == []

    run(main())


def test_dev_add_dm_opens_a_mapped_device_of_its_own_daemon(tmp_path: Path) -> None:
    """Two daemons in one process: each one's ``dm:NAME`` is its own mapped device (no
    process-wide opener for the newest daemon to take over)."""

    async def main() -> None:
        (tmp_path / "a").mkdir()
        (tmp_path / "b").mkdir()
        async with in_process(tmp_path / "a") as (_, a), in_process(tmp_path / "b") as (_, b):
            await a.execute("dm-create", {"name": "low", "table": "0 64 zero"})
            await a.execute("dev-add", {"name": "up", "uri": "dm:low"})
            assert (await one_dm(a, "low"))["open-count"] == 1
            assert await error_of(b, "dev-add", {"name": "up", "uri": "dm:low"}) == (
                "GenericError", "dev-add: dm:low: no mapped device named 'low'")
            assert await error_of(a, "dev-add", {"name": "bad", "uri": "dm:"}) == (
                "GenericError", "dev-add: bad device URI 'dm:': dm: needs a mapped device"
                " name (dm:vol0)")
            await a.execute("dev-remove", {"name": "up"})
            assert (await one_dm(a, "low"))["open-count"] == 0

    run(main())


def test_create_suspended_then_resume(tmp_path: Path) -> None:
    async def main() -> None:
        async with in_process(tmp_path) as (_, c):
            await c.execute("dm-create", {"name": "s", "table": "0 64 zero", "suspended": True})
            s = await one_dm(c, "s")
            assert s["state"] == "SUSPENDED" and s["inactive-table"] and not s["live-table"]
            await c.execute("dm-resume", {"name": "s"})
            s = await one_dm(c, "s")
            assert s["state"] == "ACTIVE" and s["table"] == "0 64 zero"

    run(main())
