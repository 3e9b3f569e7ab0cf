"""The monitor's QMP wire behaviour, through the real qemu.qmp client and raw sockets."""

from __future__ import annotations

import asyncio
import json
import stat
from pathlib import Path

from daemon_in_process import in_process
from qemu.qmp import QMPClient

from backend.control.serve import VudmServer
from vudm_testing.daemon import error_of, run


async def raw_exchange(path: Path, *lines: bytes) -> list[dict[str, object]]:
    """Send raw lines (no negotiation help) and read one reply per line after the greeting."""
    reader, writer = await asyncio.open_unix_connection(str(path))
    try:
        replies = [json.loads(await reader.readline())]
        for line in lines:
            writer.write(line + b"\n")
            await writer.drain()
            replies.append(json.loads(await reader.readline()))
        return replies
    finally:
        writer.close()
        await writer.wait_closed()


def test_greeting_and_socket_mode(tmp_path: Path) -> None:
    async def main() -> None:
        async with in_process(tmp_path) as (server, client):
            assert stat.S_IMODE(server.qmp_path.stat().st_mode) == 0o600
            greeting = client.greeting
            assert greeting is not None
            assert greeting.QMP.capabilities == []
            assert "qemu" in greeting.QMP.version
            version = await client.execute("query-version")
            assert version["package"].startswith("vudm ")

    run(main())


def test_negotiation_phase_is_enforced(tmp_path: Path) -> None:
    async def main() -> None:
        async with VudmServer(tmp_path / "q.sock") as server:
            greeting, before, caps, again, after = await raw_exchange(
                server.qmp_path,
                b'{"execute": "query-version", "id": 1}',
                b'{"execute": "qmp_capabilities", "id": 2}',
                b'{"execute": "qmp_capabilities", "id": 3}',
                b'{"execute": "query-version", "id": "four"}',
            )
            assert "QMP" in greeting
            assert before == {"error": {"class": "CommandNotFound", "desc":
                              "Expecting capabilities negotiation with 'qmp_capabilities'"},
                              "id": 1}
            assert caps == {"return": {}, "id": 2}
            assert again["error"]["class"] == "CommandNotFound"  # type: ignore[index]
            assert after["id"] == "four" and "return" in after

    run(main())


def test_malformed_input_is_answered_and_session_survives(tmp_path: Path) -> None:
    async def main() -> None:
        async with VudmServer(tmp_path / "q.sock") as server:
            replies = await raw_exchange(
                server.qmp_path,
                b'{"execute": "qmp_capabilities"}',
                b'{not json',
                b'[1, 2]',
                b'{"arguments": {}}',
                b'{"execute": 5}',
                b'{"execute": "query-devs", "arguments": []}',
                b'{"execute": "query-devs", "bogus": 1}',
                b'{"exec-oob": "query-devs"}',
                b'{"execute": "query-devs"}',
            )
            errors = [r["error"]["desc"] for r in replies[2:-1]]  # type: ignore[index]
            assert errors[0].startswith("JSON parse error")
            assert errors[1:6] == [
                "QMP input must be a JSON object",
                "QMP input lacks member 'execute'",
                "QMP input member 'execute' must be a string",
                "QMP input member 'arguments' must be an object",
                "QMP input member 'bogus' is unexpected",
            ]
            assert "exec-oob" in errors[6]
            assert replies[-1] == {"return": []}

    run(main())


def test_several_clients_and_events(tmp_path: Path) -> None:
    async def main() -> None:
        async with in_process(tmp_path) as (server, first):
            second = QMPClient("second")
            await second.connect(str(server.qmp_path))
            try:
                assert server.monitor.clients == 2
                with first.listener() as l1, second.listener() as l2:
                    server.daemon.events.emit("DM_RESUMED", {"name": "x"})
                    for listener in (l1, l2):
                        ev = await asyncio.wait_for(listener.get(), 5)
                        assert ev["event"] == "DM_RESUMED"
                        assert ev["data"] == {"name": "x"}
                        ts = ev["timestamp"]
                        assert ts["seconds"] > 1_600_000_000 and 0 <= ts["microseconds"] < 10**6
                assert await second.execute("query-devs") == []
            finally:
                await second.disconnect()

    run(main())


def test_unknown_command_and_query_commands(tmp_path: Path) -> None:
    async def main() -> None:
        async with in_process(tmp_path) as (_, client):
            assert await error_of(client, "no-such-thing") == (
                "CommandNotFound", "The command no-such-thing has not been found")
            names = {c["name"] for c in await client.execute("query-commands")}
            assert {"qmp_capabilities", "dev-add", "dev-remove", "query-devs",
                    "query-version", "query-commands", "quit"} <= names

    run(main())


def test_quit_requests_shutdown(tmp_path: Path) -> None:
    async def main() -> None:
        async with in_process(tmp_path) as (server, client):
            assert await client.execute("quit") == {}
            await asyncio.wait_for(server.wait_for_quit(), 5)

    run(main())


def test_stale_socket_is_replaced_live_one_refused(tmp_path: Path) -> None:
    async def main() -> None:
        path = tmp_path / "q.sock"
        import socket

        stale = socket.socket(socket.AF_UNIX)
        stale.bind(str(path))
        stale.close()
        async with VudmServer(path):
            second = VudmServer(path)
            try:
                await second.start()
            except FileExistsError as e:
                assert "another daemon" in str(e)
            else:
                raise AssertionError("second daemon started on a live socket")

    run(main())
