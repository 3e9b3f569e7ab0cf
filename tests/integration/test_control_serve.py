"""``vudm serve`` as a process: ready line, shutdown paths, config files, and a real guest
served by a daemon started from a config alone (no command after start)."""

from __future__ import annotations

import asyncio
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from qemu.qmp import QMPClient

from backend.control.client import READY
from backend.vhost.libvhost import NATIVE_DIR
from guests.fio import run_fio
from guests.fio_job import verify_job
from vudm_testing.daemon import DaemonProcess, error_of, run

if TYPE_CHECKING:
    from conftest import RunningGuest  # tests/integration/conftest.py

ROOT = Path(__file__).resolve().parents[2]
needs_native = pytest.mark.skipif(not (NATIVE_DIR / "libvhost-user.so").exists(),
                                  reason="needs `make native`")


def vudm_cli(qmp: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    """The installed console script, as a user would type it."""
    env = {**os.environ, "VUDM_QMP": str(qmp)}
    exe = Path(sys.executable).with_name("vudm")
    return subprocess.run([str(exe), *argv], env=env, capture_output=True, text=True,
                          timeout=30, cwd=ROOT, check=False)


def write_config(tmp: Path, size: int = 64 << 20) -> tuple[Path, Path]:
    disk = tmp / "disk.img"
    with disk.open("wb") as f:
        f.truncate(size)
    sock = tmp / "vol.sock"
    config = tmp / "vudm.toml"
    config.write_text(f"""
[[device]]
name = "disk0"
uri = "file:{disk}"

[[dm]]
name = "vol"
table = "0 {size // 512} linear disk0 0"
uuid = "VUDM-vol"

[[export]]
id = "vol0"
dm = "vol"
socket = "{sock}"
serial = "vudm-vol0"
""")
    return config, sock


def test_ready_line_quit_and_sigterm(tmp_path: Path) -> None:
    async def main() -> None:
        d = DaemonProcess(tmp_path / "a")
        async with d:
            assert d.ready_line.startswith(f"{READY}, QMP on {d.qmp_path} (pid ")
            assert stat.S_IMODE(d.qmp_path.stat().st_mode) == 0o600
            async with d.client() as c:
                assert (await c.execute("query-version"))["package"].startswith("vudm")
        assert d.proc is not None and d.proc.returncode == 0
        assert not d.qmp_path.exists()

        d = DaemonProcess(tmp_path / "b")
        await d.start()
        assert d.proc is not None
        d.proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(d.proc.wait(), 15) == 0
        assert "got SIGTERM" in d.log_path.read_text()

    run(main())


@needs_native
def test_config_builds_state_and_cli_sees_it(tmp_path: Path) -> None:
    config, sock = write_config(tmp_path)

    async def main() -> None:
        async with DaemonProcess(tmp_path / "run", config=config) as d:
            async with d.client() as c:
                (vol,) = await c.execute("query-dm")
                assert vol["name"] == "vol" and vol["state"] == "ACTIVE"
                assert vol["open-count"] == 1  # the export holds it
                (exp,) = await c.execute("query-exports")
                assert exp == {"id": "vol0", "dm": "vol", "socket": str(sock),
                               "connected": False, "num-queues": 1, "writable": True,
                               "serial": "vudm-vol0", "resubmitted": 0, "queue-ios": [0],
                               "config-changes": 0}
            # the CLI, as a separate process, against the same daemon
            out = await asyncio.to_thread(vudm_cli, d.qmp_path, "table", "vol")
            assert (out.returncode, out.stdout) == (0, "0 131072 linear disk0 0\n")
            # resume of an ACTIVE device with nothing loaded: Linux's no-op, a success
            out = await asyncio.to_thread(vudm_cli, d.qmp_path, "resume", "vol")
            assert (out.returncode, out.stdout, out.stderr) == (0, "", "")
            out = await asyncio.to_thread(vudm_cli, d.qmp_path, "remove", "vol")
            assert out.returncode == 1
            assert out.stderr == "vudm remove: dm-remove: mapped device 'vol' is exported" \
                                 " by 'vol0'; export-del first\n"
            assert sock.exists()
        assert not sock.exists()  # quit closed the export

    run(main())


def test_bad_config_exits_nonzero_naming_the_entry(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[[dm]]\nname = "v"\ntable = "0 8 zero\\n8 8 nonsense"\n')
    proc = subprocess.run(
        [sys.executable, "-m", "backend.control.cli", "serve", "--qmp",
         str(tmp_path / "q.sock"), "--config", str(config)],
        capture_output=True, text=True, timeout=30, cwd=ROOT, check=False)
    assert proc.returncode == 1
    assert f"config {config}: dm[1]: dm-create: table line 2: unknown target type" \
           " 'nonsense'" in proc.stderr
    assert not (tmp_path / "q.sock").exists()


async def next_event(c: QMPClient, listener: Any, name: str, timeout: float = 60) -> Any:
    async def find() -> Any:
        while True:
            ev = await listener.get()
            if ev["event"] == name:
                return ev

    return await asyncio.wait_for(find(), timeout)


@needs_native
@pytest.mark.guest
def test_daemon_from_config_serves_a_guest(guest: RunningGuest, tmp_path: Path) -> None:
    """Config only: the guest hotplugs the export and fio verify passes; then exports are
    hot-removed (refused while attached) and hot-added while the guest runs."""
    g = guest.guest
    config, sock = write_config(tmp_path)
    d = DaemonProcess(tmp_path / "run", config=config)
    guest.call(d.start())
    try:
        client = QMPClient("test")
        guest.call(client.connect(str(d.qmp_path)))
        with client.listener() as events:
            dev = guest.call(g.hotplug_vhost_user_blk("vol0", sock, serial="vudm-vol0"))
            ev = guest.call(next_event(client, events, "EXPORT_CONNECTED"))
            assert ev["data"] == {"id": "vol0"}
            assert guest.call(g.disk_size(dev)) == 64 << 20
            result = guest.call(run_fio(g, verify_job(dev, size="16M", iodepth=8)))
            assert result.ok, result
            assert result.verify_ok

            assert guest.call(error_of(client, "export-del", {"id": "vol0"})) == (
                "GenericError", "export-del: export 'vol0' has a guest attached"
                                " (device_del it first, or force)")
            guest.call(g.unplug("vol0"))
            guest.call(next_event(client, events, "EXPORT_DISCONNECTED"))
            guest.call(client.execute("export-del", {"id": "vol0"}))

            # a new export, created a moment before the guest hotplugs it
            sock2 = tmp_path / "vol-again.sock"
            guest.call(client.execute("export-add", {"id": "again", "dm": "vol",
                                                     "socket": str(sock2), "serial": "again"}))
            dev2 = guest.call(g.hotplug_vhost_user_blk("again", sock2, serial="again"))
            guest.call(next_event(client, events, "EXPORT_CONNECTED"))
            out = guest.call(g.run(f"dd if={dev2} of=/dev/null bs=1M count=8 iflag=direct"))
            assert out.exit_code == 0, out
            assert guest.call(g.kernel_io_errors()) == []
            guest.call(g.unplug("again"))
        guest.call(client.disconnect())
    finally:
        assert guest.call(d.stop()) == 0
