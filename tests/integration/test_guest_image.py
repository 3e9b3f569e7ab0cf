"""The guest image end to end: boot, agent, vhost-user-blk hotplug, fio, error evidence.

A qemu-storage-daemon export stands in for the vudm daemon, so these tests check the
guest side on its own: a healthy disk must verify cleanly, and a disk that fails writes
with EIO must show up both in fio's result and in the guest kernel log.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from guests.fio import parse_fio, run_fio, verify_job
from guests.image import GuestImage
from guests.qemu_cmd import opt_value
from qmp_scenarios.qsd import StorageDaemon

if TYPE_CHECKING:
    from conftest import RunningGuest

pytestmark = pytest.mark.timeout(600)

DISK_SIZE = 64 << 20


def sparse_image(path: Path, size: int = DISK_SIZE) -> Path:
    with path.open("wb") as f:
        f.truncate(size)
    return path


@pytest.fixture
def qsd_ready(require: Callable[[object, str], None]) -> None:
    require(shutil.which("qemu-storage-daemon"), "qemu-storage-daemon is not installed")


def qsd_vhost_export(
    rundir: Path, image: Path, socket: Path, *, fail_writes: bool = False
) -> StorageDaemon:
    """qemu-storage-daemon exporting ``image`` over vhost-user-blk at ``socket``.

    With ``fail_writes``, a blkdebug node between the format and the file fails every
    write with EIO (raw's write_aio event activates the rule), while reads still work.
    """
    blockdevs = [f"driver=file,node-name=file0,filename={opt_value(image)},cache.direct=on"]
    protocol = "file0"
    if fail_writes:
        blockdevs.append(
            "driver=blkdebug,node-name=dbg0,image=file0,"
            "inject-error.0.event=write_aio,inject-error.0.iotype=write,"
            "inject-error.0.errno=5"
        )
        protocol = "dbg0"
    blockdevs.append(f"driver=raw,node-name=disk0,file={protocol}")
    args: list[str] = []
    for blockdev in blockdevs:
        args += ["--blockdev", blockdev]
    args += [
        "--export",
        f"type=vhost-user-blk,id=exp0,node-name=disk0,addr.type=unix,addr.path={opt_value(socket)},"
        "writable=on",
    ]
    return StorageDaemon(rundir, args)


@pytest.mark.guest
@pytest.mark.usefixtures("qsd_ready")
def test_hotplug_verify_unplug(guest: RunningGuest, tmp_path: Path) -> None:
    g = guest.guest
    assert guest.call(g.run("echo agent-ok")).output == "agent-ok\n"

    socket = tmp_path / "vhost.sock"
    qsd = qsd_vhost_export(tmp_path / "qsd", sparse_image(tmp_path / "disk.img"), socket)
    guest.call(qsd.start())
    try:
        dev = guest.call(g.hotplug_vhost_user_blk("disk0", socket))
        assert guest.call(g.disk_size(dev)) == DISK_SIZE
        scheduler = guest.call(g.run(f"cat /sys/block/{dev[5:]}/queue/scheduler")).output
        assert "[none]" in scheduler

        result = guest.call(run_fio(g, verify_job(dev, "32M", iodepth=16)))
        assert result.exit_code == 0, result.stderr
        assert result.errors == 0
        assert result.verify_ok
        assert result.write.ios == (32 << 20) // 4096
        assert result.read.ios == result.write.ios  # every block read back and checked
        assert guest.call(g.kernel_io_errors()) == []

        guest.call(g.unplug("disk0"))
        disks = guest.call(g.run("ls /sys/block")).output.split()
        assert dev[5:] not in disks
    finally:
        guest.call(qsd.stop())


@pytest.mark.guest
@pytest.mark.usefixtures("qsd_ready")
def test_write_errors_reach_fio_and_kernel_log(guest: RunningGuest, tmp_path: Path) -> None:
    g = guest.guest
    socket = tmp_path / "vhost.sock"
    qsd = qsd_vhost_export(
        tmp_path / "qsd", sparse_image(tmp_path / "disk.img"), socket, fail_writes=True
    )
    guest.call(qsd.start())
    try:
        dev = guest.call(g.hotplug_vhost_user_blk("bad0", socket))
        assert guest.call(g.kernel_io_errors()) == []

        result = guest.call(run_fio(g, verify_job(dev, "4M", iodepth=4)))
        assert result.exit_code != 0
        assert result.errors > 0
        assert 5 in result.error_codes  # EIO
        assert not result.verify_ok

        errors = guest.call(g.kernel_io_errors())
        assert errors, g.console_tail()
        assert any(dev[5:] in line for line in errors), errors
        guest.call(g.unplug("bad0"))
    finally:
        guest.call(qsd.stop())


def test_verify_job_renders_and_parses_with_the_guest_fio(
    guest_image: GuestImage, tmp_path: Path
) -> None:
    """The guest's own static fio, run on the host: job options and JSON parsing agree."""
    fio = guest_image.kernel.parent / "fio"
    target = sparse_image(tmp_path / "target.img", 8 << 20)
    # tmpfs has no O_DIRECT and no libaio here: the same job, buffered and synchronous.
    job = dataclasses.replace(verify_job(str(target), "8M"), direct=False, ioengine="psync")
    proc = subprocess.run(
        [str(fio), *job.args()], capture_output=True, text=True, timeout=120, check=False
    )
    result = parse_fio(proc.returncode, "fio: a note before the JSON\n" + proc.stdout, proc.stderr)
    assert result.ok and result.verified and result.verify_ok, proc.stderr
    assert result.write.ios == result.read.ios == 2048
    assert result.write.io_bytes == 8 << 20
    assert result.write.lat_mean_us > 0 and result.write.lat_p99_us > 0
