"""``vudm`` verbs against a daemon, with dmsetup's output formats for table/status/info.

The daemon runs in a thread with its own loop (no subprocess needed for the client side);
``vudm serve`` as a process is covered by tests/integration/test_control_serve.py.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path

import pytest

from backend.control import cli
from backend.control.serve import VudmServer


class ThreadedDaemon:
    """A VudmServer on a private loop in a background thread."""

    def __init__(self, qmp_path: Path) -> None:
        self.qmp_path = qmp_path
        self._ready: Future[None] = Future()
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=asyncio.run, args=(self._main(),), daemon=True)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            # no path checker: it would reinstate a path a test failed by message
            async with VudmServer(self.qmp_path, checker_interval=0):
                self._ready.set_result(None)
                await self._stop.wait()
        except BaseException as e:
            if not self._ready.done():
                self._ready.set_exception(e)
            raise

    def start(self) -> None:
        self._thread.start()
        self._ready.result(timeout=10)

    def stop(self) -> None:
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


@pytest.fixture
def daemon(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    d = ThreadedDaemon(tmp_path / "qmp.sock")
    d.start()
    monkeypatch.setenv("VUDM_QMP", str(d.qmp_path))
    try:
        yield tmp_path
    finally:
        d.stop()


def vudm(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = cli.main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def ok(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    rc, out, err = vudm(capsys, *argv)
    assert rc == 0, err
    assert err == ""
    return out


def image(tmp: Path, name: str, size: int = 4 << 20) -> Path:
    path = tmp / name
    with path.open("wb") as f:
        f.truncate(size)
    return path


def test_linear_table_status_info_like_dmsetup(daemon: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    a, b = image(daemon, "a.img"), image(daemon, "b.img")
    ok(capsys, "dev", "add", "a", f"file:{a}")
    ok(capsys, "dev", "add", "b", f"file:{b}")
    ok(capsys, "create", "vol", "--table", "0 2048 linear a 0\n2048 4096 linear b 2048",
       "-u", "VUDM-vol")
    assert ok(capsys, "table", "vol") == "0 2048 linear a 0\n2048 4096 linear b 2048\n"
    # linear has no status text: dmsetup still prints the space after the type
    assert ok(capsys, "status", "vol") == "0 2048 linear \n2048 4096 linear \n"
    assert ok(capsys, "info", "vol") == (
        "Name:              vol\n"
        "State:             ACTIVE\n"
        "Read Ahead:        256\n"
        "Tables present:    LIVE\n"
        "Open count:        0\n"
        "Event number:      0\n"
        "Major, minor:      253, 0\n"
        "Number of targets: 2\n"
        "UUID: VUDM-vol\n"
        "\n")
    ok(capsys, "suspend", "vol", "--noflush", "--timeout", "5")
    ok(capsys, "load", "vol", "--table", "0 6144 linear a 0")
    info = ok(capsys, "info", "vol")
    assert "State:             SUSPENDED\n" in info
    assert "Tables present:    LIVE & INACTIVE\n" in info
    assert ok(capsys, "table", "--inactive", "vol") == "0 6144 linear a 0\n"
    ok(capsys, "resume", "vol")
    assert ok(capsys, "table", "vol") == "0 6144 linear a 0\n"
    assert "Number of targets: 1\n" in ok(capsys, "info", "vol")


def test_striped_and_all_devices_listing(daemon: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    a, b = image(daemon, "a.img"), image(daemon, "b.img")
    assert ok(capsys, "ls") == "No devices found\n"
    assert ok(capsys, "table") == "No devices found\n"
    ok(capsys, "dev", "add", "a", f"file:{a}")
    ok(capsys, "dev", "add", "b", f"file:{b}")
    table_file = daemon / "striped.table"
    table_file.write_text("0 8192 striped 2 128 a 0 b 0\n")
    ok(capsys, "create", "st", str(table_file))
    ok(capsys, "create", "z", "--table", "0 100 zero")
    assert ok(capsys, "table", "st") == "0 8192 striped 2 128 a 0 b 0\n"
    assert ok(capsys, "status", "st") == "0 8192 striped 2 a b 1 AA\n"
    assert ok(capsys, "table") == "st: 0 8192 striped 2 128 a 0 b 0\nz: 0 100 zero \n"
    assert ok(capsys, "status") == "st: 0 8192 striped 2 a b 1 AA\nz: 0 100 zero \n"
    assert ok(capsys, "ls") == "st\t(253:0)\nz\t(253:1)\n"
    infos = ok(capsys, "info").split("\n\n")
    assert infos[0].startswith("Name:              st\n") and "Number of targets: 1" in infos[0]
    assert infos[1].startswith("Name:              z\n")
    assert "UUID:" not in infos[1]
    # a suspended create has no live table: dmsetup prints an empty line for it
    ok(capsys, "create", "w", "--table", "0 8 zero", "--suspended")
    assert ok(capsys, "table", "w") == "\n"
    assert "Tables present:    INACTIVE\n" in ok(capsys, "info", "w")


def test_json_output_and_dev_export_listing(daemon: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    a = image(daemon, "a.img")
    ok(capsys, "dev", "add", "a", f"file:{a}", "--read-only")
    devs = json.loads(ok(capsys, "dev", "ls", "--json"))
    assert devs[0]["name"] == "a" and devs[0]["read-only"] is True
    assert ok(capsys, "dev", "ls").splitlines()[0].split() == ["NAME", "SIZE", "STATE", "USERS",
                                                               "URI"]
    ok(capsys, "--json", "create", "v", "--table", "0 16 linear a 0")
    entry = json.loads(ok(capsys, "info", "v", "--json"))
    assert entry["name"] == "v" and entry["table"] == "0 16 linear a 0"
    sock = daemon / "v.sock"
    ok(capsys, "export", "add", "e0", "v", str(sock), "--num-queues", "2", "--serial", "S1")
    exports = json.loads(ok(capsys, "export", "ls", "--json"))
    assert exports == [{"id": "e0", "dm": "v", "socket": str(sock), "connected": False,
                        "num-queues": 2, "writable": True, "serial": "S1",
                        "resubmitted": 0, "queue-ios": [0, 0], "config-changes": 0}]
    assert "e0" in ok(capsys, "export", "ls")
    assert "Open count:        1\n" in ok(capsys, "info", "v")
    ok(capsys, "export", "del", "e0")
    ok(capsys, "remove", "v")
    ok(capsys, "dev", "remove", "a")
    assert json.loads(ok(capsys, "dev", "ls", "--json")) == []


def test_failures_exit_nonzero_with_the_daemons_message(
        daemon: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ok(capsys, "create", "v", "--table", "0 8 zero")
    ok(capsys, "suspend", "v")
    assert vudm(capsys, "suspend", "v") == (
        1, "", "vudm suspend: dm-suspend: device 'v' is SUSPENDED, needs ACTIVE\n")
    ok(capsys, "resume", "v")
    rc, _, err = vudm(capsys, "message", "v", "0", "hello", "there")
    assert rc == 1 and err.startswith("vudm message: dm-message: zero: target does not")
    rc, _, err = vudm(capsys, "create", "bad", "--table", "0 8 zero\n8 8 frob")
    assert (rc, err) == (1, "vudm create: dm-create: table line 2: unknown target type"
                            " 'frob'\n")
    rc, _, err = vudm(capsys, "wait", "v", "0", "--timeout", "0.01")
    assert rc == 1 and "event number still 0" in err
    ok(capsys, "remove", "v")
    rc, _, err = vudm(capsys, "--qmp", str(daemon / "nowhere.sock"), "ls")
    assert rc == 1 and err.startswith("vudm ls: cannot connect to vudm at ")


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        cli.main(["suspend"])
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        cli.main(["message", "v", "notanumber", "x"])
    assert e.value.code == 2


def test_plugin_verbs_come_from_entry_points(capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []

    def setup(p: argparse.ArgumentParser) -> None:
        p.add_argument("what")

    def run(ns: argparse.Namespace) -> int:
        seen.append(ns.what)
        return 3

    verb = cli.Subcommand("frobnicate", "test verb", setup, run)
    monkeypatch.setattr(cli, "plugin_subcommands", lambda: [verb])
    assert cli.main(["frobnicate", "it"]) == 3
    assert seen == ["it"]
    with pytest.raises(ValueError, match="registered twice"):
        cli.build_parser([verb, verb])


def test_the_scenario_verbs_are_installed_entry_points() -> None:
    names = {v.name for v in cli.plugin_subcommands()}
    assert {"scenario", "oracle"} <= names
    parser = cli.build_parser(cli.plugin_subcommands())
    assert parser.parse_args(["scenario", "list"]).scenario_cmd == "list"


def test_multipath_table_status_messages_like_dmsetup(
        daemon: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ok(capsys, "dev", "add", "a", "mem:1M")
    ok(capsys, "dev", "add", "b", "mem:1M")
    table = "0 2048 multipath 1 queue_if_no_path 0 1 1 round-robin 0 2 1 a 1 b 1"
    ok(capsys, "create", "mp", "--table", table)
    # dm-mpath's own words: features, hw handler, #pgs, next pg, then the group; the
    # group is E (enabled), not A, until I/O has made it the current group, and queue_io
    # (the first feature word) is 1 until then, as in Linux (the format oracle's words)
    assert ok(capsys, "table", "mp") == table + "\n"
    assert ok(capsys, "status", "mp") == "0 2048 multipath 2 1 0 0 1 1 E 0 2 0 a A 0 b A 0\n"
    assert ok(capsys, "message", "mp", "0", "fail_path", "a") == ""
    assert ok(capsys, "status", "mp") == "0 2048 multipath 2 1 0 0 1 1 E 0 2 0 a F 1 b A 0\n"
    assert "Event number:      1\n" in ok(capsys, "info", "mp")
    ok(capsys, "message", "mp", "0", "fail_if_no_path")
    assert ok(capsys, "table", "mp") == table.replace("1 queue_if_no_path", "0") + "\n"
    ok(capsys, "suspend", "mp")
    rc, _, err = vudm(capsys, "message", "mp", "0", "reinstate_path", "a")
    assert rc != 0 and "EBUSY" in err


def test_resume_of_an_active_device_follows_the_kernel(
        daemon: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Nothing loaded: a no-op that succeeds; a table loaded: suspended (here noflush),
    swapped and resumed, as Linux's do_resume and `dmsetup resume --noflush`."""
    ok(capsys, "create", "v", "--table", "0 8 zero")
    assert ok(capsys, "resume", "v") == ""
    ok(capsys, "load", "v", "--table", "0 8 error")
    assert ok(capsys, "resume", "--noflush", "v") == ""
    assert ok(capsys, "table", "v").split() == ["0", "8", "error"]
    assert "Tables present:    LIVE\n" in ok(capsys, "info", "v")
    ok(capsys, "remove", "v")
