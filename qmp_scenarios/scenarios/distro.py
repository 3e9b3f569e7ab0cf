"""Real VMs: a Debian guest (systemd, Debian's kernel) whose root disk is a vudm multipath
device over two NBD paths, booted by direct kernel boot with root=/dev/vda.

The no-EIO scenario kills a path as the guest starts to boot (the whole boot runs on the
other one; the path comes back once the guest is up), then again under a verified
workload on its root file system, with a noflush suspend + reload + resume under that
workload; the guest must reach ``systemctl is-system-running`` = running and its kernel
log (the journal's) must hold no I/O error. The sibling, without queue_if_no_path,
loses both paths under the workload and the same checks see EIO.
"""

from __future__ import annotations

import asyncio
import contextlib

from guests.distro import find_distro_image
from guests.machine import Guest
from guests.qemu_cmd import VhostUserDisk

from ..registry import scenario
from ..rig import Rig
from ..steps import (
    add_nbd_path,
    create_dm,
    guest_shell,
    kill_path,
    load_table,
    restore_path,
    resume,
    start_io,
    suspend,
    wait_guest_writes,
    wait_io,
)
from ..workloads import verify_writes
from .common import mpath_table

ROOT = "root"
DATA_FILE = "/var/tmp/vudm-verify.dat"


async def boot_debian_on_mpath(rig: Rig, *, queue_if_no_path: bool,
                               kill_during_boot: bool) -> Guest:
    """The Debian root image behind two NBD paths and a multipath device, exported and
    booted from; with ``kill_during_boot``, path p0 dies (and comes back) while the
    guest boots. Returns once the guest's agent (a systemd service) answers."""
    image = find_distro_image()
    root_img = rig.workdir / "root.img"
    async with rig.rec.step("copy the Debian root image"):
        proc = await asyncio.create_subprocess_exec(
            "cp", "--sparse=always", str(image.rootfs), str(root_img))
        if await proc.wait() != 0:
            raise RuntimeError(f"copying {image.rootfs} failed")
    for p in ("p0", "p1"):
        await add_nbd_path(rig, p, root_img)
    sectors = root_img.stat().st_size >> 9
    table = mpath_table(0, sectors, ["p0", "p1"], queue_if_no_path=queue_if_no_path)
    await create_dm(rig, "mp", table)
    sock = rig.socket_path(f"{ROOT}.sock")
    await rig.qmp("export-add", {"id": ROOT, "dm": "mp", "socket": str(sock),
                                 "writable": True})
    # A bound on the whole boot, not a wait: a TCG boot of systemd takes minutes.
    guest = Guest(rig.workdir / "guest", image=image.boot_image(), memory_mb=1024,
                  boot_disks=(VhostUserDisk(ROOT, sock),), boot_timeout=1500.0)
    rig.guest = guest
    async with rig.rec.step("boot Debian from the vudm multipath disk") as st:
        mark = rig.events.mark()
        booting = asyncio.create_task(guest.start())
        try:
            if kill_during_boot:
                # QEMU connects before the guest's firmware runs: the whole boot (kernel,
                # initrd, root mount, systemd) then runs with p0 dead.
                await rig.events.wait("EXPORT_CONNECTED", {"id": ROOT}, since=mark,
                                      timeout=300)
                await kill_path(rig, "p0", wait_failed="mp", timeout=300)
            await booting
        except BaseException:
            booting.cancel()
            with contextlib.suppress(BaseException):
                await booting
            raise
        rig.result.timings["boot_to_agent"] = guest.boot_seconds or 0.0
        st.detail = f"agent up after {guest.boot_seconds or 0:.1f}s"
    if kill_during_boot:
        await restore_path(rig, "p0", wait_reinstated="mp", timeout=300)
    async with rig.rec.step("systemctl is-system-running --wait") as st:
        t0 = rig.rec.now()
        res = await guest.run("systemctl is-system-running --wait", 900)
        state = res.output.strip()
        rig.result.timings["boot_to_running"] = (guest.boot_seconds or 0.0) + rig.rec.now() - t0
        st.detail = state
        if state != "running":
            failed = await guest.run("systemctl --failed --no-legend --plain", 60)
            raise RuntimeError(f"system is {state!r}, not running; failed units: "
                               f"{failed.output.strip()}")
    return guest


async def journal_io_errors(rig: Rig) -> int:
    """Count the journal's kernel I/O error lines (the verdict reads dmesg, the same
    kernel messages; this records that the journal has them too)."""
    out = await guest_shell(rig, "journal: kernel I/O error lines",
                            "journalctl -k -q --no-pager | "
                            "grep -ciE 'I/O error|blk_update_request' || true", 120)
    return int(out.strip() or 0)


@scenario("distro-boot-failover", "a Debian guest boots (systemd, to running) from a vudm "
          "multipath root disk over two NBD paths while one path dies; then under fio "
          "verify on its root file system the other path dies and a noflush suspend + "
          "reload + resume happens: no I/O error in the guest or its journal",
          image_mb=1, family="distro-boot",
          evidence={"mp": {"targets.0.path-failures": 2, "targets.0.paths.p0.ios": 1,
                           "targets.0.paths.p1.ios": 1}})
async def distro_boot_failover(rig: Rig) -> None:
    await boot_debian_on_mpath(rig, queue_if_no_path=True, kill_during_boot=True)
    io = await start_io(rig, verify_writes(DATA_FILE, size="16M", rate_iops=500))
    await wait_guest_writes(rig, "/dev/vda", 100, timeout=300)
    await kill_path(rig, "p1", wait_failed="mp")
    await suspend(rig, "mp", noflush=True)
    table = mpath_table(0, (rig.workdir / "root.img").stat().st_size >> 9, ["p0", "p1"])
    await load_table(rig, "mp", table)
    await resume(rig, "mp")
    await restore_path(rig, "p1", wait_reinstated="mp")
    await wait_io(rig, io, timeout=900)
    await journal_io_errors(rig)


@scenario("distro-boot-failover-eio", "sibling of distro-boot-failover: without "
          "queue_if_no_path both paths die under fio on the Debian guest's root file "
          "system, and the guest sees EIO", expect="eio", image_mb=1, family="distro-boot",
          evidence={"mp": {"targets.0.path-failures": 2, "eio": 1}})
async def distro_boot_failover_eio(rig: Rig) -> None:
    await boot_debian_on_mpath(rig, queue_if_no_path=False, kill_during_boot=False)
    # What the verdict runs afterwards must not need the dead disk: read it once now.
    await guest_shell(rig, "warm dmesg and journalctl",
                      "dmesg >/dev/null; journalctl -k -n1 -q --no-pager >/dev/null", 120)
    io = await start_io(rig, verify_writes(DATA_FILE, size="16M", rate_iops=500))
    await wait_guest_writes(rig, "/dev/vda", 100, timeout=300)
    await kill_path(rig, "p0", wait_failed="mp")
    await kill_path(rig, "p1", wait_failed="mp")
    await wait_io(rig, io, timeout=900)
