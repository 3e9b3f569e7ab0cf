"""Fuzzing a real ``vudm serve`` with hypothesis: bad input never freezes, confuses or
corrupts it (issue 10, DESIGN "Input limits").

Five categories of input, each from its own strategy:

- ``qmp``: QMP messages for every command, arguments of every JSON type and size;
- ``table``: table lines for every registered target, valid ones mutated word by word;
- ``message``: target messages to mapped devices of every kind;
- ``uri``: device URIs of every scheme, with the paths and sockets that used to hurt;
- ``raw``: bytes and JSON fragments on a fresh socket, its write side then closed.

Every input is checked the same way: every line the daemon sends is strict JSON of QMP's
shape (a reply, an error with a class and a short desc that is never "internal error",
or an event); after an error the daemon's state (query-dm, query-devs, query-exports)
is byte-identical to what it was; and a second client (a LivenessProbe in its own
process) keeps getting ``query-version`` answered within 100 ms throughout. A command
that succeeds is undone, or the baseline rebuilt, so the next input starts from the same
state. Daemon RSS is compared before and after; open descriptors after the first round
(what the daemon opens once, on first use, is open by then) and after the last.

CI (``make test``) runs a fixed, derandomised set twice in well under 60 s. ``make fuzz`` runs
random inputs round-robin over the categories for ``FUZZ_SECONDS`` and writes its
figures to ``results/fuzz.json`` (``FUZZ_REPORT``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backend.control.commands import REGISTRY
from backend.dm import registry as targets
from vudm_testing.daemon import DaemonProcess, LivenessProbe

T = TypeVar("T")

FUZZ_SECONDS = float(os.environ.get("FUZZ_SECONDS", "0") or 0)
"""0: the fixed CI set; otherwise run random inputs for this long."""
CI_EXAMPLES = {"qmp": 100, "table": 100, "message": 60, "uri": 80, "raw": 60}
BATCH = 40
"""Examples per category per round when fuzzing for a time."""
REPLY_TIMEOUT = 20.0
LIVENESS_LIMIT = 0.1

# -- the daemon, driven from a loop thread (hypothesis calls are synchronous) ----------------


class Daemon:
    """A vudm serve process with a baseline state, and a raw QMP connection to it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="fuzz-loop",
                                       daemon=True)
        self.thread.start()
        # A nice 19 run on a busy machine imports slowly: the ready line may take a while.
        self.proc = DaemonProcess(root / "d", ready_timeout=180.0)
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.probe: LivenessProbe | None = None
        self.next_id = 0
        self.baseline = ""
        self.resets = 0
        self.inputs: Counter[str] = Counter()
        self.sent: list[tuple[float, float, str, str]] = []
        """(start, end, category, input) of every input, on time.monotonic()."""
        self.errors: Counter[str] = Counter()
        self.image = root / "disk.img"
        self.image.write_bytes(b"\0" * (1 << 20))
        self.fifo = root / "fifo"
        os.mkfifo(self.fifo)
        (root / "empty.img").touch()

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    # -- lifecycle --------------------------------------------------------------------

    async def start(self) -> None:
        await self.proc.start()
        self.reader, self.writer = await self._connect()
        self.probe = LivenessProbe(self.proc.qmp_path)
        await self.probe.start()
        await self.build_baseline()

    async def stop(self) -> None:
        if self.probe is not None:
            await self.probe.stop()
        if self.writer is not None:
            self.writer.close()
        try:
            await asyncio.wait_for(self.proc.stop(timeout=10.0), 30.0)
        finally:
            await self.proc.kill()

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_unix_connection(str(self.proc.qmp_path),
                                                            limit=32 << 20)
        greeting = strict(await asyncio.wait_for(reader.readline(), REPLY_TIMEOUT))
        assert "QMP" in greeting, greeting
        writer.write(b'{"execute": "qmp_capabilities"}\n')
        assert "return" in strict(await asyncio.wait_for(reader.readline(), REPLY_TIMEOUT))
        return reader, writer

    @property
    def pid(self) -> int:
        assert self.proc.proc is not None
        return self.proc.proc.pid

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return -1

    def fds(self) -> dict[str, str]:
        """Open descriptors, each with what it points at: a leak names itself."""
        out = {}
        for fd in os.listdir(f"/proc/{self.pid}/fd"):
            with contextlib.suppress(FileNotFoundError):  # closed while we looked
                out[fd] = os.readlink(f"/proc/{self.pid}/fd/{fd}")
        return out

    # -- talking ----------------------------------------------------------------------

    async def send(self, message: bytes) -> dict[str, Any]:
        """One message on the main connection; its reply (events in between checked)."""
        assert self.reader is not None and self.writer is not None
        self.writer.write(message + b"\n")
        while True:
            try:
                line = await asyncio.wait_for(self.reader.readline(), REPLY_TIMEOUT)
            except TimeoutError:
                # A failure in itself; a new connection keeps replies and requests paired
                # for whatever runs next (hypothesis replays the input to confirm it).
                self.writer.close()
                self.reader, self.writer = await self._connect()
                raise AssertionError(f"no reply in {REPLY_TIMEOUT}s to {short(message)}"
                                     ) from None
            assert line.endswith(b"\n"), f"the daemon hung up on {short(message)}"
            reply = strict(line)
            check_shape(reply)
            if "event" not in reply:
                return reply

    async def execute(self, name: str, arguments: dict[str, Any] | None = None
                      ) -> dict[str, Any]:
        self.next_id += 1
        msg: dict[str, Any] = {"execute": name, "id": f"fz{self.next_id}"}
        if arguments is not None:
            msg["arguments"] = arguments
        return await self.send(json.dumps(msg).encode())

    async def ok(self, name: str, arguments: dict[str, Any] | None = None) -> Any:
        reply = await self.execute(name, arguments)
        assert "return" in reply, f"{name} {arguments}: {reply}"
        return reply["return"]

    async def state(self) -> str:
        seen = {cmd: await self.ok(cmd) for cmd in ("query-dm", "query-devs",
                                                     "query-exports")}
        return json.dumps(seen, sort_keys=True)

    # -- the baseline -----------------------------------------------------------------

    async def build_baseline(self) -> None:
        """Devices and mapped devices of every kind, an export: what inputs aim at."""
        await self.ok("dev-add", {"name": "d0", "uri": "null:64M"})
        await self.ok("dev-add", {"name": "f0", "uri": f"file:{self.image}"})
        await self.ok("dev-add", {"name": "m0", "uri": "mem:1M"})
        for name, table in BASELINE_TABLES:
            await self.ok("dm-create", {"name": name, "table": table})
        await self.ok("dev-add", {"name": "x0", "uri": "dm:zr"})
        await self.ok("dm-wait", {"name": "mir", "event-nr": 0, "timeout": 60})
        await self.ok("export-add", {"id": "e0", "dm": "lin",
                                     "socket": str(self.root / "e0.sock")})
        self.baseline = await self.state()

    async def reset(self) -> None:
        """Back to the baseline after a command that changed state succeeded."""
        self.resets += 1
        start = time.monotonic()
        try:
            await self._reset()
        finally:
            self.sent.append((start, time.monotonic(), "reset", "(back to the baseline)"))

    async def _reset(self) -> None:
        for export in await self.ok("query-exports"):
            await self.ok("export-del", {"id": export["id"], "force": True})
        for dev in await self.ok("query-devs"):
            if not dev["inline"] and dev["uri"].startswith("dm:"):
                await self.ok("dev-remove", {"name": dev["name"]})
        while mapped := await self.ok("query-dm"):
            held = {w[3:] for m in mapped for w in f"{m['table']} {m['inactive-table']}"
                    .split() if w.startswith("dm:")}
            for m in mapped:
                if m["name"] not in held:
                    reply = await self.execute("dm-remove", {"name": m["name"],
                                                             "force": True})
                    if "error" in reply and m["state"] != "ACTIVE":
                        await self.execute("dm-resume", {"name": m["name"]})
        for dev in await self.ok("query-devs"):
            if not dev["inline"]:
                await self.ok("dev-remove", {"name": dev["name"]})
        await self.build_baseline()

    # -- one input --------------------------------------------------------------------

    async def judge(self, category: str, message: bytes, undo: Callable[[dict[str, Any]],
                    Coroutine[Any, Any, None]] | None = None) -> None:
        """Send one input; check the reply, the state, and undo what succeeded."""
        self.inputs[category] += 1
        start = time.monotonic()
        try:
            reply = await self.send(message)
        finally:
            self.sent.append((start, time.monotonic(), category, short(message)[:200]))
        if "error" in reply:
            self.errors[category] += 1
            after = await self.state()
            assert after == self.baseline, (
                f"{category}: state changed by a failed {short(message)}: {reply}")
            return
        if undo is not None:
            await undo(reply)
        if await self.state() != self.baseline:
            await self.reset()

    async def raw(self, data: bytes) -> None:
        """Bytes on a fresh connection, then EOF: every line back must be QMP JSON."""
        self.inputs["raw"] += 1
        start = time.monotonic()
        reader, writer = await self._connect()
        try:
            writer.write(data)
            writer.write_eof()
            total = 0
            while line := await asyncio.wait_for(reader.readline(), REPLY_TIMEOUT):
                total += len(line)
                assert total < 64 << 20, "more replies than a few MiB for one input"
                if not line.endswith(b"\n"):
                    break  # cut off by the hang-up: nothing to judge
                check_shape(strict(line))
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
            self.sent.append((start, time.monotonic(), "raw", short(data)[:200]))
        assert await self.state() == self.baseline, f"raw {short(data)} changed state"


BASELINE_TABLES = [
    ("lin", "0 1024 linear d0 0"),
    ("zr", "0 1024 zero"),
    ("err", "0 8 error"),
    ("str", "0 1024 striped 2 8 d0 0 m0 0"),
    ("dst", "0 1024 dust d0 0 512"),
    ("mp", "0 1024 multipath 0 0 1 1 round-robin 0 2 0 d0 m0"),
    ("mir", "0 1024 mirror core 1 8 2 d0 0 f0 0"),
    ("up", "0 1024 linear dm:lin 0"),
]
"""No time-driven target (flakey, delay): the state must not change by itself."""


# -- checks -----------------------------------------------------------------------------------


def strict(line: bytes) -> Any:
    """RFC 8259 JSON: no Infinity, no NaN."""

    def refuse(name: str) -> Any:
        raise AssertionError(f"{name} in a reply: {short(line)}")

    return json.loads(line, parse_constant=refuse)


def check_shape(msg: Any) -> None:
    """A QMP greeting, reply, error or event, and never a leaked exception."""
    assert isinstance(msg, dict), msg
    if "error" in msg:
        err = msg["error"]
        assert isinstance(err, dict) and isinstance(err.get("class"), str), msg
        desc = err.get("desc")
        assert isinstance(desc, str) and desc, msg
        assert "internal error" not in desc, desc
        assert len(desc) < 2048, f"an error desc of {len(desc)} characters"
        assert set(msg) <= {"error", "id"}, msg
    elif "event" in msg:
        assert isinstance(msg["event"], str) and "timestamp" in msg, msg
    else:
        assert "return" in msg or "QMP" in msg, msg
        assert set(msg) <= {"return", "id", "QMP"}, msg


def short(value: object) -> str:
    text = repr(value)
    return text if len(text) < 300 else f"{text[:300]}... ({len(text)} characters)"


# -- strategies -------------------------------------------------------------------------------

NAMES = ["d0", "f0", "m0", "x0", "lin", "zr", "err", "str", "dst", "mp", "mir", "up", "e0"]
BAD_NAMES = ["", ".", "..", "/", "a b", "a\nb", "a\x00b", "x" * 129, "x" * 5000, "\u00e9",
             "dm:lin", "null:1M", "\udc80", "nope"]
HUGE = "9" * 4400

numbers = st.one_of(
    st.integers(0, 1 << 16), st.integers(0, 1 << 70),
    st.sampled_from([0, 1, 2, 7, 8, 512, 1024, (1 << 63) - 1, 1 << 63, 1 << 64, 10**30]))
number_words = st.one_of(
    numbers.map(str),
    st.sampled_from(["-1", "\u00b2", "\u0668", "0x10", "1e3", "", "0" * 30 + "1", HUGE,
                     "9" * 4000, "1.5", "+1"]))
name_words = st.sampled_from(NAMES + [f"dm:{n}" for n in NAMES] + BAD_NAMES[:-2])
keywords = st.sampled_from([
    "core", "disk", "sync", "nosync", "handle_errors", "queue_if_no_path",
    "no_partitions", "round-robin", "service-time", "queue-length", "fail_if_no_path",
    "retain_attached_hw_handler", "pg_init_retries", "pg_init_delay_msecs",
    "corrupt_bio_byte", "drop_writes", "error_writes", "error_reads", "r", "w",
    "null:1M", "mem:1M", "file:/dev/zero", "nbd+unix:///x?socket=/nonexistent"])
words = st.one_of(number_words, name_words, keywords,
                  st.text(st.characters(min_codepoint=33, max_codepoint=0x2FF), max_size=8))

TEMPLATES: dict[str, list[str]] = {
    "linear": ["d0 0", "dm:zr 8", "f0 0"],
    "zero": [""],
    "error": [""],
    "striped": ["2 8 d0 0 m0 0", "1 8 d0 0", "3 16 d0 0 m0 0 f0 0"],
    "dust": ["d0 0 512", "d0 0 4096"],
    "flakey": ["d0 0 1 1", "d0 0 0 5 1 drop_writes",
               "d0 0 1 1 5 corrupt_bio_byte 32 r 1 0"],
    "delay": ["d0 0 0", "d0 0 10 m0 0 10", "d0 0 0 m0 0 0 f0 0 0"],
    "mirror": ["core 1 8 2 d0 0 m0 0", "core 2 8 nosync 2 d0 0 m0 0 1 handle_errors",
               "disk 2 m0 8 2 d0 0 f0 0"],
    "multipath": ["0 0 1 1 round-robin 0 2 0 d0 m0",
                  "1 queue_if_no_path 0 2 1 round-robin 0 1 1 d0 1 "
                  "service-time 0 1 2 m0 1 1",
                  "0 0 1 1 queue-length 0 2 1 d0 1 m0 1"],
}


@st.composite
def target_args(draw: st.DrawFn, target: str) -> str:
    """A valid argument list for ``target``, mutated a few words at a time."""
    argv = draw(st.sampled_from(TEMPLATES.get(target, [""]))).split()
    for _ in range(draw(st.integers(0, 3))):
        op = draw(st.sampled_from(["replace", "insert", "delete"]))
        if op == "insert" or not argv:
            argv.insert(draw(st.integers(0, len(argv))), draw(words))
        elif op == "replace":
            argv[draw(st.integers(0, len(argv) - 1))] = draw(words)
        else:
            del argv[draw(st.integers(0, len(argv) - 1))]
    return " ".join(argv)


@st.composite
def table_lines(draw: st.DrawFn) -> str:
    lines = []
    start = 0
    for _ in range(draw(st.integers(1, 3))):
        target = draw(st.sampled_from([*sorted(targets.registered()), "nosuch", "LINEAR"]))
        length = draw(st.one_of(st.sampled_from(["8", "512", "1024"]), number_words))
        first = draw(st.one_of(st.just(str(start)), number_words))
        lines.append(f"{first} {length} {target} {draw(target_args(target))}")
        start += int(length) if length.isascii() and length.isdigit() and len(length) < 30 \
            else 8
    return "\n".join(lines)


json_scalars = st.one_of(
    st.none(), st.booleans(), numbers, st.integers(-(1 << 70), 0),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12), st.sampled_from(NAMES + BAD_NAMES))
json_values = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)),
    max_leaves=12)


def value_for(kind: str) -> st.SearchStrategy[Any]:
    """Mostly values of the right JSON type, sometimes anything."""
    right: dict[str, st.SearchStrategy[Any]] = {
        "str": st.one_of(name_words, st.text(max_size=20), st.sampled_from(BAD_NAMES)),
        "int": st.one_of(numbers, st.integers(-(1 << 64), -1)),
        "number": st.one_of(numbers, st.floats(allow_nan=False, allow_infinity=False),
                            st.just(10**400)),
        "bool": st.booleans(),
    }
    return st.one_of(right[kind], right[kind], json_values)


COMMANDS = [c for c in REGISTRY if c.name != "quit"]


@st.composite
def qmp_messages(draw: st.DrawFn) -> bytes:
    cmd = draw(st.sampled_from(COMMANDS))
    arguments: dict[str, Any] = {}
    for arg in cmd.args:
        # Optional arguments half the time; a required one is missing now and then.
        if (draw(st.booleans()) or not arg.optional) and draw(st.integers(0, 9)):
            arguments[arg.name] = draw(value_for(arg.type.value))
    if draw(st.integers(0, 7)) == 0:
        arguments[draw(st.text(max_size=8))] = draw(json_values)
    if cmd.name == "dm-wait":  # no timeout would be a wait for an event that never comes
        arguments["timeout"] = draw(st.sampled_from([0, 0.01]))
    msg: dict[str, Any] = {"execute": cmd.name, "arguments": arguments}
    shape = draw(st.integers(0, 11))
    if shape == 0:
        msg["arguments"] = draw(json_values)
    elif shape == 1:
        del msg["execute"]
        msg["arguments"] = {}
    elif shape == 2:
        msg[draw(st.text(max_size=8))] = draw(json_values)
    msg["id"] = draw(st.one_of(st.integers(0, 1 << 60), st.text(max_size=8), json_values))
    return json.dumps(msg).encode()


def uri_of(root: Path) -> st.SearchStrategy[str]:
    paths = st.sampled_from([
        str(root / "disk.img"), str(root / "fifo"), str(root), str(root / "empty.img"),
        "/dev/zero", "/dev/null", "/proc/self/status", "/nonexistent", "", "/tmp/a\x00b",
        "/tmp/\udc80", "/" + "p" * 5000, "relative.img", str(root / "disk.img") + "?aio=threads",
        str(root / "disk.img") + "?aio=nope"])
    sizes = st.one_of(number_words, st.sampled_from(
        ["1M", "1Gi", "64MiB", "1T", "1k", "512B", "4096", "99999999999999999999T", "1X",
         "0", "513", "16G"]))
    sockets = st.one_of(paths, st.sampled_from([str(root / "e0.sock"), "/tmp/%00x"]))
    nbd_unix = st.builds(lambda e, s, q: f"nbd+unix:///{e}?socket={s}{q}",
                         st.sampled_from(["", "x", "%00", "e" * 5000]), sockets,
                         st.sampled_from(["", "&timeout=1", "&timeout=1e999",
                                          "&timeout=-1", "&x=1"]))
    nbd_tcp = st.builds(lambda h, p, e: f"nbd://{h}{p}/{e}",
                        st.sampled_from(["127.0.0.1", "[::1]", "[::1", "", "localhost"]),
                        st.sampled_from(["", ":1", ":0", ":65536", ":99999999999", ":x"]),
                        st.sampled_from(["", "x", "%00"]))
    small = st.one_of(st.sampled_from(["1M", "64M", "512", "8k"]), sizes)
    return st.one_of(
        paths.map(lambda p: f"file:{p}"),
        small.map(lambda s: f"null:{s}"),
        small.filter(lambda s: s not in ("16G", "1T")).map(lambda s: f"mem:{s}"),
        nbd_unix, nbd_tcp,
        st.sampled_from(NAMES + BAD_NAMES).map(lambda n: f"dm:{n}"),
        st.text(max_size=30), st.sampled_from(["x:y", "FILE:/x", ":", "dm:", "nbd:"]))


raw_tokens = st.sampled_from([
    b"{", b"}", b"[", b"]", b'"', b"\\", b":", b",", b" ", b"\n", b"1e999", b"-", b"0",
    HUGE.encode(), b"true", b"nul", b"Infinity", b"NaN", b"\x00", b"\xff", b"\xed\xa0\x80",
    b'"execute"', b'"query-version"', b'"arguments"', b'"id"', b'"qmp_capabilities"',
    b"[" * 100, b"]" * 100, b"{" * 70, b'"\\u0000"', b'"\\ud800"'])
raw_inputs = st.one_of(st.binary(max_size=200), st.lists(raw_tokens, max_size=40).map(
    b"".join))


# -- the runs ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    d = Daemon(tmp_path_factory.mktemp("fuzz"))
    d.call(d.start())
    yield d
    d.call(d.stop())
    d.loop.call_soon_threadsafe(d.loop.stop)
    d.thread.join(10)


def run_category(name: str, strategy: st.SearchStrategy[T],
                 check: Callable[[T], None]) -> None:
    """The fixed CI examples, or random batches until FUZZ_SECONDS are spent."""
    def batch(examples: int, derandomize: bool) -> None:
        @settings(max_examples=examples, derandomize=derandomize, deadline=None,
                  database=None, suppress_health_check=list(HealthCheck))
        @given(strategy)
        def one(value: T) -> None:
            check(value)

        one()

    if not FUZZ_SECONDS:
        batch(CI_EXAMPLES[name], True)
    else:
        batch(BATCH, False)


def categories(d: Daemon) -> dict[str, tuple[st.SearchStrategy[Any], Callable[[Any], None]]]:
    def qmp(message: bytes) -> None:
        async def undo(reply: dict[str, Any]) -> None:
            pass  # the state check resets the baseline if it changed

        d.call(d.judge("qmp", message, undo))

    def table(text: str) -> None:
        async def undo_create(reply: dict[str, Any]) -> None:
            await d.ok("dm-remove", {"name": "fz", "force": True})

        async def undo_load(reply: dict[str, Any]) -> None:
            await d.ok("dm-clear", {"name": "zr"})

        create = {"execute": "dm-create", "arguments": {"name": "fz", "table": text}}
        d.call(d.judge("table", json.dumps(create).encode(), undo_create))
        load = {"execute": "dm-load", "arguments": {"name": "zr", "table": text}}
        d.call(d.judge("table", json.dumps(load).encode(), undo_load))

    def message(args: tuple[str, Any, str]) -> None:
        name, sector, text = args
        msg = {"execute": "dm-message",
               "arguments": {"name": name, "sector": sector, "message": text}}
        d.call(d.judge("message", json.dumps(msg).encode()))

    def uri(args: tuple[str, bool]) -> None:
        text, read_only = args

        async def undo(reply: dict[str, Any]) -> None:
            await d.ok("dev-remove", {"name": "fz"})

        msg = {"execute": "dev-add",
               "arguments": {"name": "fz", "uri": text, "read-only": read_only}}
        d.call(d.judge("uri", json.dumps(msg).encode(), undo))

    def raw(data: bytes) -> None:
        d.call(d.raw(data))

    message_words = st.one_of(words, st.sampled_from([
        "fail_path", "reinstate_path", "queue_if_no_path", "fail_if_no_path",
        "switch_group", "disable_group", "enable_group", "addbadblock", "removebadblock",
        "queryblock", "clearbadblocks", "countbadblocks", "enable", "disable", "quiet",
        "d0", "m0", "1", "0"]))
    return {
        "qmp": (qmp_messages(), qmp),
        "table": (table_lines(), table),
        "message": (st.tuples(st.sampled_from([*NAMES, "nope"]), st.one_of(
            st.integers(0, 2048), numbers), st.lists(message_words, max_size=5).map(
                " ".join)), message),
        "uri": (st.tuples(uri_of(d.root), st.booleans()), uri),
        "raw": (raw_inputs, raw),
    }


def slow_probes(d: Daemon, limit: int = 10) -> list[dict[str, Any]]:
    """The slowest probes over the limit, each with the inputs sent while it waited: what
    to suspect when the loop was slow (or nothing, when the machine was)."""
    assert d.probe is not None
    slow = sorted((p for p in d.probe.timeline if p[1] >= LIVENESS_LIMIT),
                  key=lambda p: -p[1])[:limit]
    out = []
    for end, latency in slow:
        begin = end - latency * d.probe.rounds - 0.05  # the whole probe, with a margin
        during = [f"{cat}: {what}" for s, e, cat, what in d.sent if s <= end and e >= begin]
        out.append({"ms": round(latency * 1000, 1), "inputs": during[:5],
                     "inputs_total": len(during)})
    return out


def test_fuzz_inputs_keep_the_daemon_calm(daemon: Daemon) -> None:
    d = daemon
    rss_before = d.rss_kib()
    fds_before: dict[str, str] = {}
    cats = categories(d)
    started = time.monotonic()
    rounds = 0
    while True:
        for name, (strategy, check) in cats.items():
            run_category(name, strategy, check)
        rounds += 1
        if rounds == 1:
            # Descriptors are counted from here: the first round opens what the daemon
            # opens once, on first use (a file device's worker pool and its eventfd). A
            # leak grows with every round; CI runs the same examples twice to see it.
            d.call(d.reset())
            fds_before = d.fds()
        if rounds >= 2 and (not FUZZ_SECONDS or time.monotonic() - started >= FUZZ_SECONDS):
            break
    elapsed = time.monotonic() - started
    d.call(d.reset())  # whatever the last input left, then measure
    # The raw inputs read until the daemon hung up, and the reset's round trips ran
    # the daemon's loop past the closing of those sockets: nothing is left to settle.
    rss_after, fds_after = d.rss_kib(), d.fds()
    assert d.probe is not None
    d.call(d.probe.more(3))
    figures = {
        "seconds": round(elapsed, 1), "rounds": rounds, "inputs": dict(d.inputs),
        "errors": dict(d.errors), "resets": d.resets,
        "rss_kib": {"before": rss_before, "after": rss_after},
        "fds": {"before": len(fds_before), "after": len(fds_after)},
        "query_version": {"probes": d.probe.probes,
                          "worst_ms": round(d.probe.worst * 1000, 1)},
    }
    figures["slow_probes"] = slow_probes(d)
    print(f"\nfuzz figures: {json.dumps(figures)}")
    if FUZZ_SECONDS:
        report = Path(os.environ.get("FUZZ_REPORT", "results/fuzz.json"))
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(json.dumps(figures, indent=2) + "\n")
    d.probe.check(LIVENESS_LIMIT, min_probes=3)
    new = {fd: what for fd, what in fds_after.items() if fds_before.get(fd) != what}
    assert len(fds_after) <= len(fds_before), (
        f"descriptors: {len(fds_before)} -> {len(fds_after)}, new or changed: {new}")
    assert rss_after - rss_before < 64 << 10, f"RSS: {rss_before} -> {rss_after} KiB"

