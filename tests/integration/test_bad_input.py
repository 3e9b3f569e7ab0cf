"""Issue 10's reproducers: bad input gets a clear error, changes nothing, never stalls.

Each test runs ``vudm serve`` as a process, sends one family of bad input with
qemu.qmp (raw sockets where the protocol itself is the subject) and checks the
contract of DESIGN.md "Input limits": the reply is an error naming what was wrong (never
"internal error"), the daemon's state (query-dm, query-devs, query-exports) is what it
was, and a second client's ``query-version`` answered within 100 ms throughout
(:class:`LivenessProbe`: the fastest of three round trips per probe, the worst probe
asserted, so a blocked loop fails and a busy machine does not). Where the bad input used
to freeze the daemon, SIGTERM is also checked to still end it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from qemu.qmp import ExecuteError, QMPClient

from vudm_testing.daemon import DaemonProcess, LivenessProbe, run

REPLY_TIMEOUT = 20.0
"""How long a command may take to answer before the test calls it a hang."""


@contextlib.asynccontextmanager
async def daemon(tmp_path: Path) -> AsyncIterator[tuple[DaemonProcess, QMPClient, QMPClient]]:
    """A ``vudm serve`` process and two negotiated clients: A sends, B probes."""
    d = DaemonProcess(tmp_path / "d")
    await d.start()
    try:
        async with d.client("a") as a, d.client("b") as b:
            yield d, a, b
    finally:
        try:
            await asyncio.wait_for(d.stop(timeout=5.0), 30.0)
        finally:
            await d.kill()


async def state(client: QMPClient) -> str:
    """Everything a client can see, as one canonical string."""
    seen = {cmd: await client.execute(cmd)
            for cmd in ("query-dm", "query-devs", "query-exports")}
    return json.dumps(seen, sort_keys=True)


async def ok(client: QMPClient, cmd: str, arguments: dict[str, Any] | None = None) -> Any:
    return await asyncio.wait_for(client.execute(cmd, arguments), REPLY_TIMEOUT)


async def refused(client: QMPClient, cmd: str, arguments: dict[str, Any],
                  *fragments: str) -> str:
    """Run a command that must fail with a clear GenericError; its desc."""
    try:
        result = await asyncio.wait_for(client.execute(cmd, arguments), REPLY_TIMEOUT)
    except ExecuteError as e:
        desc = e.error.error.desc
        assert e.error_class == "GenericError", desc
        assert "internal error" not in desc, f"{cmd} {_short(arguments)}: {desc}"
        assert desc.startswith(f"{cmd}:"), desc
        for fragment in fragments:
            assert fragment in desc, f"{fragment!r} not in {desc!r}"
        assert len(desc) < 1024, f"an error reply of {len(desc)} characters"
        return desc
    except TimeoutError:
        raise AssertionError(f"{cmd} {_short(arguments)}: no reply in {REPLY_TIMEOUT}s"
                             ) from None
    raise AssertionError(f"{cmd} {_short(arguments)} succeeded: {result!r}")


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) < 200 else text[:200] + "..."


async def sigterm_ends(d: DaemonProcess, *clients: QMPClient) -> None:
    """SIGTERM still ends the daemon, cleanly (``clients`` are disconnected first)."""
    assert d.proc is not None
    for client in clients:
        await client.disconnect()
    d.proc.send_signal(signal.SIGTERM)
    code = await asyncio.wait_for(d.proc.wait(), 10.0)
    assert code == 0, f"vudm serve exited with {code} on SIGTERM"


# -- 1. a device that is not a regular file or block device --------------------------------


def test_fifo_directory_char_device_and_empty_file_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    empty = tmp_path / "empty.img"
    empty.touch()
    cases = [
        (f"file:{fifo}", True, "not a regular file or block device"),
        (f"file:{fifo}", False, "not a regular file or block device"),
        (f"file:{tmp_path}", True, "not a regular file or block device"),
        ("file:/dev/zero", True, "not a regular file or block device"),
        ("file:/proc/self/status", True, "size 0"),
        (f"file:{empty}", False, "size 0"),
    ]

    async def body() -> None:
        async with daemon(tmp_path) as (d, a, b):
            before = await state(a)
            async with LivenessProbe(d.qmp_path) as probe:
                for uri, read_only, why in cases:
                    await refused(a, "dev-add", {"name": "f", "uri": uri,
                                                 "read-only": read_only}, why)
                await refused(a, "dm-create", {"name": "m",
                                               "table": f"0 8 linear file:{fifo} 0"},
                              "not a regular file or block device")
                await probe.more()
            probe.check()
            assert await state(a) == before
            await sigterm_ends(d, a, b)

    run(body(), 90)


# -- 2. a mirror's first resync and a bitmap scan ---------------------------------------------


def test_mirror_resync_and_bitmap_scans_leave_the_loop_free(tmp_path: Path) -> None:
    regions = 1 << 14  # of 2 sectors: 0.2 s of resync in one go before, seconds under load

    async def body() -> None:
        async with daemon(tmp_path) as (d, a, b):
            length = 2 * regions
            for leg in ("Z1", "Z2"):
                await ok(a, "dm-create", {"name": leg, "table": f"0 {length} zero"})
            async with LivenessProbe(d.qmp_path) as probe:
                await ok(a, "dm-create", {"name": "M", "table":
                                          f"0 {length} mirror core 1 2 2 dm:Z1 0 dm:Z2 0"})
                nr = await ok(a, "dm-wait", {"name": "M", "event-nr": 0, "timeout": 120})
                assert nr["event-nr"] >= 1
                await probe.more()
                status = (await ok(a, "query-dm", {"name": "M"}))[0]["status"]
                assert f"{regions}/{regions}" in status, status
                # nosync, and a disk log with no valid header: whole-bitmap scans.
                big = 1 << 24
                await ok(a, "dm-create", {"name": "Z3", "table": f"0 {2 * big} zero"})
                await ok(a, "dm-create", {"name": "N", "table":
                                          f"0 {2 * big} mirror core 2 2 nosync"
                                          " 2 dm:Z3 0 dm:Z3 0"})
                await ok(a, "dm-create", {"name": "D", "table":
                                          f"0 {2 * big} mirror disk 2 null:64M 2"
                                          " 2 dm:Z3 0 dm:Z3 0"})
                await probe.more()
            probe.check()
            await sigterm_ends(d, a, b)

    run(body(), 180)


# -- 3. probing an export socket path where a listener never accepts ------------------------


def test_export_on_a_socket_with_a_full_backlog_is_refused_without_blocking(
        tmp_path: Path) -> None:
    path = tmp_path / "busy.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(0)
    waiting: list[socket.socket] = []
    while True:  # fill the backlog: the next connect would wait for an accept
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        c.setblocking(False)
        try:
            c.connect(str(path))
        except BlockingIOError:
            c.close()
            break
        waiting.append(c)

    async def body() -> None:
        async with daemon(tmp_path) as (d, a, b):
            await ok(a, "dm-create", {"name": "M", "table": "0 8 zero"})
            before = await state(a)
            async with LivenessProbe(d.qmp_path) as probe:
                await refused(a, "export-add", {"id": "e", "dm": "M", "socket": str(path)},
                              "in use")
                await probe.more()
            probe.check()
            assert await state(a) == before
            assert path.exists(), "the busy socket path was removed"
            await sigterm_ends(d, a, b)

    try:
        run(body(), 90)
    finally:
        for c in waiting:
            c.close()
        listener.close()


# -- 4. dm-wait on a device that goes away ---------------------------------------------------


def test_dm_wait_is_answered_when_the_device_is_removed(tmp_path: Path) -> None:
    async def body() -> None:
        async with daemon(tmp_path) as (d, a, b):
            await ok(a, "dm-create", {"name": "v", "table": "0 8 zero"})
            async with LivenessProbe(d.qmp_path) as probe:
                waiter = asyncio.create_task(b.execute("dm-wait", {"name": "v",
                                                                   "event-nr": 0}))
                # B's commands start in order: once this answers, dm-wait is waiting.
                await ok(b, "query-version")
                assert not waiter.done()
                await ok(a, "dm-remove", {"name": "v"})
                try:
                    result = await asyncio.wait_for(waiter, REPLY_TIMEOUT)
                except ExecuteError as e:
                    assert "removed" in e.error.error.desc, e.error.error.desc
                except TimeoutError:
                    raise AssertionError("dm-wait never answered after dm-remove") from None
                else:
                    raise AssertionError(f"dm-wait returned {result} for a removed device")
                await probe.more()
            probe.check()

    run(body(), 60)


# -- 5. a create that fails leaves no trace ----------------------------------------------------


def test_failed_create_is_invisible_while_it_runs_and_leaves_nothing(tmp_path: Path) -> None:
    sock = tmp_path / "silent.sock"

    async def body() -> None:
        accepted = asyncio.Event()
        held: list[asyncio.StreamWriter] = []

        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            held.append(writer)  # accept, and never say a word
            accepted.set()

        server = await asyncio.start_unix_server(silent, path=str(sock))
        async with server, daemon(tmp_path) as (d, a, b):
            before = await state(b)
            async with LivenessProbe(d.qmp_path) as probe:
                create = asyncio.create_task(a.execute("dm-create", {
                    "name": "X", "table": f"0 8 linear nbd+unix:///x?socket={sock} 0"}))
                await asyncio.wait_for(accepted.wait(), REPLY_TIMEOUT)
                assert not create.done()
                assert all(e["name"] != "X" for e in await ok(b, "query-dm"))
                await refused(b, "query-dm", {"name": "X"}, "no mapped device")
                await refused(b, "export-add", {"id": "e", "dm": "X",
                                                "socket": str(tmp_path / "e.sock")})
                await refused(b, "dev-add", {"name": "dx", "uri": "dm:X"})
                await refused(b, "dm-create", {"name": "X", "table": "0 8 zero"})
                try:
                    await asyncio.wait_for(create, REPLY_TIMEOUT)
                except ExecuteError as e:
                    assert "timed out" in e.error.error.desc, e.error.error.desc
                else:
                    raise AssertionError("dm-create over a silent NBD server succeeded")
                await probe.more()
            probe.check()
            assert await state(b) == before
            await ok(b, "dm-create", {"name": "X", "table": "0 8 zero"})
            assert await ok(b, "query-exports") == []
            for w in held:
                w.close()

    run(body(), 90)


# -- 6. force-removal of a device that is in use ------------------------------------------------


def test_force_remove_of_a_device_in_use_is_refused(tmp_path: Path) -> None:
    async def body() -> None:
        async with daemon(tmp_path) as (d, a, _b):
            await ok(a, "dm-create", {"name": "S", "table": "0 8 zero"})
            await ok(a, "dm-create", {"name": "U", "table": "0 8 linear dm:S 0"})
            await ok(a, "dev-add", {"name": "X", "uri": "dm:S"})
            before = await state(a)
            async with LivenessProbe(d.qmp_path) as probe:
                await refused(a, "dm-remove", {"name": "S", "force": True}, "'U'", "'X'")
                await probe.more()
            probe.check()
            assert await state(a) == before
            await ok(a, "dm-remove", {"name": "U"})
            await ok(a, "dev-remove", {"name": "X"})
            await ok(a, "dm-remove", {"name": "S", "force": True})

    run(body(), 60)


# -- 7. stacking cycles -------------------------------------------------------------------------


def test_stacking_cycles_are_refused(tmp_path: Path) -> None:
    async def body() -> None:
        async with daemon(tmp_path) as (d, a, _b):
            await ok(a, "dm-create", {"name": "A", "table": "0 8 zero"})
            await ok(a, "dm-create", {"name": "B", "table": "0 8 linear dm:A 0"})
            await ok(a, "dm-create", {"name": "C", "table": "0 8 linear dm:B 0"})
            await ok(a, "dm-create", {"name": "S", "table": "0 8 zero"})
            await ok(a, "dev-add", {"name": "X", "uri": "dm:S"})
            await ok(a, "dm-create", {"name": "T", "table": "0 8 linear X 0"})
            await ok(a, "dev-add", {"name": "Y", "uri": "dm:T"})
            before = await state(a)
            async with LivenessProbe(d.qmp_path) as probe:
                await refused(a, "dm-load", {"name": "A", "table": "0 8 linear dm:B 0"},
                              "cycle")
                await refused(a, "dm-load", {"name": "A", "table": "0 8 linear dm:C 0"},
                              "cycle")
                await refused(a, "dm-load", {"name": "S", "table": "0 8 linear X 0"},
                              "cycle")
                await refused(a, "dm-load", {"name": "S", "table": "0 8 linear Y 0"},
                              "cycle")
                await probe.more()
            probe.check()
            assert await state(a) == before

    run(body(), 60)


# -- 8. inputs that made Python exceptions into replies -------------------------------------------


BIG = "9" * 4400


def test_no_python_exception_reaches_a_reply(tmp_path: Path) -> None:
    cases: list[tuple[str, dict[str, Any], str]] = [
        ("dev-add", {"name": "n", "uri": "null:1Xi"}, "bad size"),
        ("dev-add", {"name": "n", "uri": "mem:1T"}, "mem:"),
        ("dev-add", {"name": "n", "uri": f"null:{BIG}"}, "bad size"),
        ("dev-add", {"name": "n", "uri": "file:/tmp/a\x00b"}, "NUL"),
        ("dev-add", {"name": "n", "uri": "nbd+unix:///x?socket=/tmp/a\x00b"}, "NUL"),
        ("dev-add", {"name": "n", "uri": "nbd+unix:///x?socket=/tmp/a%00b"}, "NUL"),
        ("dev-add", {"name": "n", "uri": "nbd+unix:///x?socket=/tmp/\udc80"}, "surrogate"),
        ("dev-add", {"name": "n", "uri": "nbd://[::1"}, "bad device URI"),
        ("dm-create", {"name": "m", "table": f"0 {BIG} zero"}, "4400 characters"),
        ("dm-create", {"name": "m", "table": f"{BIG} 8 zero"}, "4400 characters"),
        ("dm-create", {"name": "m", "table": f"0 8 linear null:8M {BIG}"}, "4400 characters"),
        ("dm-create", {"name": "m", "table": f"0 8 linear null:8M {BIG[:4000]}"}, "offset"),
        ("dm-create", {"name": "m", "table": f"0 {BIG[:4000]} zero"}, "length"),
        ("dm-create", {"name": "m", "table": "0 \u00b2 zero"}, "ASCII"),
        ("dm-create", {"name": "m", "table": "0 \u0668 zero"}, "ASCII"),
        ("dm-wait", {"name": "v", "event-nr": 0, "timeout": 10 ** 400}, "'timeout'"),
        ("dm-suspend", {"name": "v", "timeout": 10 ** 400}, "'timeout'"),
        ("dm-message", {"name": "v", "sector": 1 << 63, "message": "x"}, "'sector'"),
        ("dm-message", {"name": "v", "sector": 0, "message": f"addbadblock {BIG}"}, ""),
        ("export-add", {"id": "e", "dm": "v", "socket": "/tmp/x.sock",
                        "num-queues": 1 << 63}, "'num-queues'"),
        ("export-add", {"id": "e", "dm": "v", "socket": "/tmp/\udc80.sock"}, "surrogate"),
        ("export-add", {"id": "e", "dm": "v", "socket": "/tmp/a\x00.sock"}, "NUL"),
    ]

    async def body() -> None:
        async with daemon(tmp_path) as (d, a, _b):
            await ok(a, "dm-create", {"name": "v", "table": "0 8 dust null:1M 0 512"})
            # null:1Gi was a KeyError: binary units are sizes like the others now.
            await ok(a, "dev-add", {"name": "gi", "uri": "null:1Gi"})
            assert (await ok(a, "query-devs"))[-1]["size"] == 1 << 30
            await ok(a, "dev-remove", {"name": "gi"})
            before = await state(a)
            async with LivenessProbe(d.qmp_path) as probe:
                for cmd, arguments, fragment in cases:
                    await refused(a, cmd, arguments, *([fragment] if fragment else []))
                    assert await state(a) == before, f"{cmd} {_short(arguments)}"
                await probe.more()
            probe.check()

    run(body(), 90)


# -- 9. nonsense that used to be accepted ---------------------------------------------------------


def test_nonsense_names_sizes_and_counts_are_refused(tmp_path: Path) -> None:
    bad_names = ["/", "..", ".", "", "a\x00b", "a\nb", "a b", "a/b", "x" * 129,
                 "x" * 100_000, "\u00e9"]
    cases: list[tuple[str, dict[str, Any], str]] = []
    for name in bad_names:
        cases += [("dev-add", {"name": name, "uri": "null:1M"}, "'name'"),
                  ("dm-create", {"name": name, "table": "0 8 zero"}, "'name'"),
                  ("export-add", {"id": name, "dm": "v", "socket": "/tmp/n.sock"}, "'id'")]
    cases += [
        ("dev-add", {"name": "n", "uri": "null:99999999999999999999T"}, "63 bits"),
        ("dev-add", {"name": "n", "uri": "null:9223372036854775807K"}, "63 bits"),
        ("dm-create", {"name": "m", "table": f"0 {10 ** 30} zero"}, "length"),
        ("dm-create", {"name": "m", "table": f"0 {1 << 62} zero\n{1 << 62} {1 << 62} zero"},
         "63 bits"),
        ("export-add", {"id": "e", "dm": "v", "socket": "/tmp/q.sock", "num-queues": 65536},
         "'num-queues'"),
        ("export-add", {"id": "e", "dm": "v", "socket": "/tmp/q.sock",
                        "num-queues": 1 << 22}, "'num-queues'"),
        ("export-add", {"id": "e", "dm": "v", "socket": "/tmp/q.sock", "num-queues": 0},
         "'num-queues'"),
        ("dm-create", {"name": "m", "table": f"0 {1 << 62} mirror core 1 2 2 dm:big 0"
                                             " dm:big 0"}, "region"),
    ]

    async def body() -> None:
        async with daemon(tmp_path) as (d, a, _b):
            await ok(a, "dm-create", {"name": "v", "table": "0 8 zero"})
            await ok(a, "dm-create", {"name": "big", "table": f"0 {1 << 62} zero"})
            before = await state(a)
            async with LivenessProbe(d.qmp_path) as probe:
                for cmd, arguments, fragment in cases:
                    await refused(a, cmd, arguments, fragment)
                    assert await state(a) == before, f"{cmd} {_short(arguments)}"
                await probe.more()
            probe.check()
            # What the rules allow still works: the longest name, every allowed character.
            good = "aZ09_.:+-" + "x" * 119
            await ok(a, "dev-add", {"name": good, "uri": "null:1M"})
            await ok(a, "dm-create", {"name": good, "table": f"0 8 linear {good} 0"})
            await ok(a, "export-add", {"id": good, "dm": good, "socket":
                                       str(tmp_path / "good.sock"), "num-queues": 1024})

    run(body(), 90)


# -- 10. a backing file that changes under the daemon ---------------------------------------------


def test_truncated_or_deleted_backing_file_is_reported_honestly(tmp_path: Path) -> None:
    image = tmp_path / "disk.img"
    image.write_bytes(b"\1" * (1 << 20))

    async def body() -> None:
        async with daemon(tmp_path) as (d, a, _b):
            await ok(a, "dev-add", {"name": "f", "uri": f"file:{image}"})
            async with LivenessProbe(d.qmp_path) as probe:
                (dev,) = await ok(a, "query-devs")
                assert dev["size"] == 1 << 20 and dev["state"] == "ok"
                os.truncate(image, 1 << 19)
                (dev,) = await ok(a, "query-devs")
                assert dev["size"] == 1 << 19, dev
                image.unlink()
                (dev,) = await ok(a, "query-devs")
                assert dev["state"] == "deleted", dev
                await probe.more()
            probe.check()

    run(body(), 60)


# -- 11. the protocol's own limits -----------------------------------------------------------------


def _strict(text: bytes) -> Any:
    """JSON as RFC 8259 has it: no Infinity, no NaN."""

    def refuse(name: str) -> Any:
        raise AssertionError(f"{name} is not JSON: {text[:200]!r}")

    return json.loads(text, parse_constant=refuse)


class RawClient:
    """A QMP client on a bare socket, reading whole reply lines."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, path: Path, limit: int = 1 << 24) -> RawClient:
        """``limit``: what the stream reader buffers (it stops reading at twice that)."""
        reader, writer = await asyncio.open_unix_connection(str(path), limit=limit)
        client = cls(reader, writer)
        await client.reply()  # the greeting
        client.writer.write(b'{"execute": "qmp_capabilities"}')
        assert "return" in await client.reply()
        return client

    async def reply(self) -> Any:
        line = await asyncio.wait_for(self.reader.readline(), REPLY_TIMEOUT)
        assert line.endswith(b"\n"), f"connection closed: {line[:200]!r}"
        return _strict(line)

    async def ask(self, raw: bytes) -> Any:
        # A newline after each message: after a lexical error (Infinity is not JSON)
        # the daemon, like QEMU, skips to the end of the line.
        self.writer.write(raw + b"\n")
        return await self.reply()

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


def test_protocol_limits_get_error_replies_in_valid_json(tmp_path: Path) -> None:
    deep = 2000

    async def body() -> None:
        async with daemon(tmp_path) as (d, _a, _b):
            raw = await RawClient.connect(d.qmp_path)
            async with LivenessProbe(d.qmp_path) as probe:
                for message, why in [
                    (b'{"execute": "query-version", "id": ' + BIG.encode() + b"}",
                     "number"),
                    (b'{"execute": "query-version", "arguments": {"a": '
                     + b"[" * deep + b"]" * deep + b"}}", "deep"),
                    (b'{"execute": "query-version", "id": [' + b"{" * 100 + b"}" * 100
                     + b"]}", "deep"),
                    (b'{"execute": "query-version", "id": 1e999}', "number"),
                    (b'{"execute": "query-version", "id": -Infinity}', ""),
                    (b'{"execute": "query-version", "id": NaN}', ""),
                ]:
                    reply = await raw.ask(message)
                    assert "error" in reply, reply
                    assert why in reply["error"]["desc"], reply
                    # ... and the connection still serves.
                    assert "return" in await raw.ask(b'{"execute": "query-version"}')
                big = await raw.ask(b'{"execute": "query-version", "id": ' + b"9" * 1001
                                    + b"}")
                assert "error" in big, big
                fine = await raw.ask(b'{"execute": "query-version", "id": ' + b"9" * 40
                                     + b"}")
                assert fine["id"] == int("9" * 40), fine
                await probe.more()
            probe.check()
            await raw.close()

    run(body(), 60)


# -- 12. a client that does not read, and a command whose failure is huge --------------------------


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_a_client_that_does_not_read_is_dropped_and_log_lines_stay_short(
        tmp_path: Path) -> None:
    async def body() -> None:
        async with daemon(tmp_path) as (d, a, _b):
            assert d.proc is not None
            rss_before = _rss_kib(d.proc.pid)
            # A small reader buffer: past 128 KiB this client really stops reading.
            raw = await RawClient.connect(d.qmp_path, limit=64 << 10)
            async with LivenessProbe(d.qmp_path) as probe:
                # Requests by the thousand, and never a read: the replies pile up in the
                # daemon until it hangs up (our writes fail). It must do so before it has
                # grown by 64 MiB (main grew to 400 MB on 20,000 of them).
                request = b'{"execute": "query-commands"}'
                closed = False
                rss_peak = rss_before
                try:
                    for _ in range(200):
                        raw.writer.write(request * 1000)
                        await asyncio.wait_for(raw.writer.drain(), REPLY_TIMEOUT)
                        rss_peak = max(rss_peak, _rss_kib(d.proc.pid))
                        assert rss_peak - rss_before < 64 << 10, (
                            f"the daemon grew by {rss_peak - rss_before} KiB for one client")
                except ConnectionError:
                    closed = True
                await probe.more(5)
                rss_peak = max(rss_peak, _rss_kib(d.proc.pid))
                assert closed, "the daemon kept a client that reads nothing"
                log_before = d.log_path.stat().st_size
                await refused(a, "dev-add", {"name": "n" * (1 << 20), "uri": "null:1M"},
                              "'name'")
                await refused(a, "dm-create", {"name": "m", "table": "0 8 zero " +
                                               "y" * (1 << 20)})
                await probe.more()
            probe.check()
            grown = rss_peak - rss_before
            assert grown < 64 << 10, f"the daemon grew by {grown} KiB for one client"
            assert d.log_path.stat().st_size - log_before < 16 << 10
            longest = max(len(line) for line in d.log_path.read_text().splitlines())
            assert longest < 4096, f"a log line of {longest} characters"
            await raw.close()

    run(body(), 90)
