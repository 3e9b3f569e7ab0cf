"""``--state-dir``: what was acknowledged is on disk before the reply, and a new daemon
on the same directory comes back with the same devices, tables, states and exports."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from daemon_in_process import in_process
from qemu.qmp import QMPClient

from backend.control.config import Config
from backend.journal import STATE_FILE
from vudm_testing.daemon import error_of, run

MiB = 1 << 20


def image(tmp: Path, name: str, size: int = 4 * MiB) -> Path:
    path = tmp / name
    with path.open("wb") as f:
        f.truncate(size)
    return path


async def views(client: QMPClient) -> dict[str, Any]:
    """query-dm/devs/exports minus what a restart may change (events, opens, links)."""
    dms = await client.execute("query-dm")
    for d in dms:
        del d["event-nr"], d["open-count"]
    exports = await client.execute("query-exports")
    for e in exports:
        del e["connected"], e["resubmitted"]
    return {"dm": dms, "devs": await client.execute("query-devs"), "exports": exports}


def saved(state_dir: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((state_dir / STATE_FILE).read_text())
    return doc


def test_state_survives_a_restart_exactly(tmp_path: Path) -> None:
    state = tmp_path / "state"
    img = image(tmp_path, "d0.img")
    sock = tmp_path / "e0.sock"

    async def main() -> None:
        async with in_process(tmp_path, state_dir=state, checker_interval=0) as (_, c):
            await c.execute("dev-add", {"name": "d0", "uri": f"file:{img}"})
            await c.execute("dm-create", {"name": "lin", "table": "0 4096 linear d0 0",
                                          "uuid": "U-lin"})
            await c.execute("dm-create", {"name": "sus", "table": "0 2048 linear d0 4096"})
            # every reply was preceded by its write: the file already has "sus" ACTIVE
            assert [m["state"] for m in saved(state)["mapped"]] == ["ACTIVE", "ACTIVE"]
            await c.execute("dm-suspend", {"name": "sus", "noflush": True})
            assert saved(state)["mapped"][1]["state"] == "SUSPENDED"
            await c.execute("dm-load", {"name": "sus", "table": "0 2048 zero"})
            await c.execute("dm-create", {"name": "waiting", "table": "0 8 error",
                                          "suspended": True})
            await c.execute("dm-create", {"name": "top", "table": "0 2048 linear dm:lin 0"})
            await c.execute("export-add", {"id": "e0", "dm": "top", "socket": str(sock),
                                           "num-queues": 2, "writable": False,
                                           "serial": "S0"})
            # a refused command writes nothing new
            before = saved(state)
            await error_of(c, "dm-create", {"name": "bad", "table": "0 8 nosuch"})
            assert saved(state) == before
            first = await views(c)
        async with in_process(tmp_path, state_dir=state, checker_interval=0) as (_, c):
            assert await views(c) == first
            sus = next(d for d in first["dm"] if d["name"] == "sus")
            assert sus["state"] == "SUSPENDED" and sus["inactive-table"]
            # and the restored daemon goes on saving
            await c.execute("dm-resume", {"name": "sus"})
            assert saved(state)["mapped"][1] == {
                "name": "sus", "uuid": "", "state": "ACTIVE", "live": "0 2048 zero",
                "inactive": None}

    run(main())


def test_state_wins_over_config_and_config_is_the_first_state(tmp_path: Path) -> None:
    state = tmp_path / "state"
    config = Config(tmp_path / "vudm.toml", commands=[
        ("dm[1]", "dm-create", {"name": "fromcfg", "table": "0 8 zero"})])

    async def main() -> None:
        async with in_process(tmp_path, config, state_dir=state, checker_interval=0) as (_, c):
            assert [m["name"] for m in saved(state)["mapped"]] == ["fromcfg"]
            await c.execute("dm-remove", {"name": "fromcfg"})
            await c.execute("dm-create", {"name": "later", "table": "0 16 zero"})
        async with in_process(tmp_path, config, state_dir=state, checker_interval=0) as (_, c):
            assert [d["name"] for d in await c.execute("query-dm")] == ["later"]

    run(main())


def test_a_down_nbd_server_comes_back_as_a_failed_path_not_an_error(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    gone = tmp_path / "gone.sock"
    uri = f"nbd+unix:///x?socket={gone}"
    table = "0 2048 multipath 1 queue_if_no_path 0 1 1 round-robin 0 1 1 p0 1"
    (state / STATE_FILE).write_text(json.dumps({
        "format": 1, "sizes": {uri: MiB},
        "devices": [{"name": "p0", "uri": uri, "read-only": False, "size": MiB}],
        "mapped": [{"name": "mp", "uuid": "", "state": "ACTIVE", "live": table,
                    "inactive": None}],
        "exports": []}))

    async def main() -> None:
        async with in_process(tmp_path, state_dir=state, checker_interval=0) as (srv, c):
            (dev,) = await c.execute("query-devs")
            assert dev["name"] == "p0" and dev["size"] == MiB
            assert dev["state"] == "disconnected"
            (mp,) = await c.execute("query-dm")
            assert mp["state"] == "ACTIVE" and mp["table"].startswith("0 2048 multipath")
            assert srv.checker is None

    run(main())


def test_an_unrestorable_state_is_a_start_up_error_naming_the_entry(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / STATE_FILE).write_text(json.dumps({
        "format": 1, "devices": [{"name": "d0", "uri": f"file:{tmp_path}/missing.img",
                                  "read-only": False, "size": MiB}]}))

    async def main() -> None:
        try:
            async with in_process(tmp_path, state_dir=state):
                raise AssertionError("started from a state naming a missing file")
        except Exception as e:
            assert "cannot restore device 'd0'" in str(e)

    run(main())


def test_quit_while_stopping_says_what_it_waits_for(tmp_path: Path) -> None:
    async def main() -> None:
        async with in_process(tmp_path, checker_interval=0) as (srv, c):
            assert await c.execute("quit") == {}
            assert srv.daemon.quit_requested.is_set()
            _, desc = await error_of(c, "quit")
            assert desc == "quit: draining: no request in flight, closing"

    run(main())
