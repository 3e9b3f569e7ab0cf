"""The bad-input matrix: every refusal is a QMP error naming the problem, the daemon
keeps serving, and nothing changed (query-dm, query-devs, query-exports before == after).
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
from daemon_in_process import in_process

from vudm_testing.daemon import error_of, run

G, NF = "GenericError", "CommandNotFound"

# (command, arguments, error class, desc: exact, or a prefix when it ends with "...")
MATRIX: list[tuple[str, dict[str, Any], str, str]] = [
    ("dm-explode", {}, NF, "The command dm-explode has not been found"),
    # arguments: missing, extra, wrongly typed, out of range
    ("dev-add", {"name": "x"}, G, "dev-add: missing argument 'uri'"),
    ("dev-add", {"name": "x", "uri": 5}, G, "dev-add: 'uri': expected string, got int"),
    ("dev-add", {"name": "x", "uri": "file:/nonexistent", "colour": "red"}, G,
     "dev-add: unexpected argument 'colour' (expected name, uri, [read-only])"),
    ("dev-add", {"name": "x", "uri": "file:/x", "read-only": 1}, G,
     "dev-add: 'read-only': expected boolean, got int"),
    ("dev-add", {"name": "", "uri": "file:/x"}, G, "dev-add: 'name': must not be empty"),
    ("dm-create", {"name": "n"}, G, "dm-create: missing argument 'table'"),
    ("dm-create", {"name": "n", "table": ["0 8 zero"]}, G,
     "dm-create: 'table': expected string, got array"),
    ("dm-suspend", {"name": "a", "noflush": "yes"}, G,
     "dm-suspend: 'noflush': expected boolean, got string"),
    ("dm-resume", {"name": "a", "noflush": "yes"}, G,
     "dm-resume: 'noflush': expected boolean, got string"),
    ("dm-suspend", {"name": "a", "timeout": -1}, G,
     "dm-suspend: 'timeout': must be at least 0, got -1"),
    ("dm-message", {"name": "a", "sector": -5, "message": "x"}, G,
     "dm-message: 'sector': must be at least 0, got -5"),
    ("dm-wait", {"name": "a", "event-nr": 1.5}, G,
     "dm-wait: 'event-nr': expected integer, got number"),
    ("dm-wait", {"name": "a", "event-nr": True}, G,
     "dm-wait: 'event-nr': expected integer, got bool"),
    ("export-add", {"id": "e", "dm": "a", "socket": "/tmp/s", "num-queues": 0}, G,
     "export-add: 'num-queues': must be at least 1, got 0"),
    ("query-dm", {"name": None}, G, "query-dm: 'name': expected string, got null"),
    # bad tables
    ("dm-create", {"name": "n", "table": "0 8 zero\n8 8 foo"}, G,
     "dm-create: table line 2: unknown target type 'foo'"),
    ("dm-create", {"name": "n", "table": "0 8 zero\n16 8 zero"}, G,
     "dm-create: table line 2: gap in table: target starts at 16, previous ends at 8"),
    ("dm-create", {"name": "n", "table": "0 8 linear nosuch 0"}, G,
     "dm-create: table line 1: linear: device lookup failed: nosuch: no device named"
     " 'nosuch' (dev-add it, or give a URI)"),
    ("dm-create", {"name": "n", "table": ""}, G, "dm-create: 'table': must not be empty"),
    ("dm-create", {"name": "n", "table": "# nothing"}, G, "dm-create: table has no targets"),
    ("dm-load", {"name": "a", "table": "0 8 linear d0"}, G, "dm-load: table line 1: ..."),
    ("dm-create", {"name": "a", "table": "0 8 zero"}, G,
     "dm-create: mapped device 'a' already exists"),
    ("dev-add", {"name": "d0", "uri": "file:/x"}, G, "dev-add: device 'd0' already exists"),
    ("dev-add", {"name": "x", "uri": "gopher:/x"}, G,
     "dev-add: bad device URI 'gopher:/x': unknown scheme 'gopher' ..."),
    # unknown objects
    ("dm-suspend", {"name": "nope"}, G, "dm-suspend: no mapped device named 'nope'"),
    ("query-dm", {"name": "nope"}, G, "query-dm: no mapped device named 'nope'"),
    ("dev-remove", {"name": "nope"}, G, "dev-remove: no device named 'nope'"),
    ("export-del", {"id": "nope"}, G, "export-del: no export named 'nope'"),
    ("export-add", {"id": "e2", "dm": "nope", "socket": "/tmp/s"}, G,
     "export-add: no mapped device named 'nope'"),
    # wrong states
    ("dm-suspend", {"name": "s"}, G, "dm-suspend: device 's' is SUSPENDED, needs ACTIVE"),
    ("dm-message", {"name": "a", "sector": 0, "message": "fail_path d0"}, G,
     "dm-message: linear: target does not accept messages ..."),
    ("dm-message", {"name": "a", "sector": 99999, "message": "x"}, G,
     "dm-message: sector 99999 is outside the device ..."),
    ("dev-remove", {"name": "d0"}, G,
     "dev-remove: device 'd0' is in use by 'a' (live table), 's' (inactive table)"),
    ("dm-remove", {"name": "a"}, G,
     "dm-remove: mapped device 'a' is exported by 'x'; export-del first"),
    ("export-add", {"id": "x", "dm": "a", "socket": "/tmp/other"}, G,
     "export-add: export 'x' already exists"),
    ("export-add", {"id": "y", "dm": "a", "socket": "{sock_x}"}, G,
     "export-add: socket {sock_x} is taken by export 'x'"),
    ("export-add", {"id": "y", "dm": "a", "socket": "{foreign}"}, G,
     "export-add: {foreign} is in use: another server is listening on it"),
]


def _ids() -> list[str]:
    return [f"{i:02d}-{cmd}" for i, (cmd, *_) in enumerate(MATRIX)]


@pytest.mark.parametrize(("cmd", "args", "cls", "desc"), MATRIX, ids=_ids())
def test_refused_without_side_effects(tmp_path: Path, cmd: str, args: dict[str, Any],
                                      cls: str, desc: str) -> None:
    disk = tmp_path / "d0.img"
    disk.write_bytes(b"\0" * (1 << 20))
    sock_x = tmp_path / "x.sock"
    foreign = tmp_path / "foreign.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(foreign))
    listener.listen(1)
    subst = {"sock_x": str(sock_x), "foreign": str(foreign)}
    args = {k: v.format(**subst) if isinstance(v, str) else v for k, v in args.items()}
    desc = desc.format(**subst)

    async def main() -> None:
        async with in_process(tmp_path) as (_, c):
            await c.execute("dev-add", {"name": "d0", "uri": f"file:{disk}"})
            await c.execute("dm-create", {"name": "a", "table": "0 1024 linear d0 0"})
            await c.execute("dm-create", {"name": "s", "table": "0 1024 linear d0 1024",
                                          "suspended": True})
            await c.execute("export-add", {"id": "x", "dm": "a", "socket": str(sock_x)})

            async def snapshot() -> list[Any]:
                return [await c.execute(q) for q in ("query-dm", "query-devs",
                                                     "query-exports")]

            before = await snapshot()
            got_cls, got_desc = await error_of(c, cmd, args)
            assert got_cls == cls
            if desc.endswith("..."):
                assert got_desc.startswith(desc[:-3]), got_desc
            else:
                assert got_desc == desc
            assert await snapshot() == before
            await c.execute("export-del", {"id": "x"})

    try:
        run(main())
    finally:
        listener.close()


def test_multipath_message_refused_while_suspended(tmp_path: Path) -> None:
    from backend.dm import registered

    if "multipath" not in registered():
        pytest.skip("the multipath target does not exist yet")
    paths = []
    for i in range(2):
        p = tmp_path / f"p{i}.img"
        p.write_bytes(b"\0" * (1 << 20))
        paths.append(p)

    async def main() -> None:
        async with in_process(tmp_path) as (_, c):
            for i, p in enumerate(paths):
                await c.execute("dev-add", {"name": f"p{i}", "uri": f"file:{p}"})
            await c.execute("dm-create", {"name": "mp", "table":
                            "0 2048 multipath 0 0 1 1 round-robin 0 2 1 p0 1 p1 1"})
            await c.execute("dm-suspend", {"name": "mp"})
            before = await c.execute("query-dm")
            cls, desc = await error_of(c, "dm-message", {"name": "mp", "sector": 0,
                                                         "message": "fail_path p0"})
            assert cls == "GenericError" and desc.startswith("dm-message: ")
            assert "EBUSY" in desc or "suspended" in desc, desc
            assert await c.execute("query-dm") == before

    run(main())
