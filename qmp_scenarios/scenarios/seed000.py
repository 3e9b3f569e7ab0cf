"""Seed 000 (dm raid1: fix EIO after log failure) and dm-raid1's hold rule with a real
guest: a mirror over two NBD legs, killed log or leg under verified writes. With
handle_errors the writes are held, never failed; a noflush suspend hands them back to
the core (pushback) and the table loaded before resume - a new log, or a linear table
over the surviving leg - completes them. A flush suspend fails them instead."""

from __future__ import annotations

from guests.fio import FioHandle

from ..registry import scenario
from ..rig import Rig
from ..steps import (
    add_image,
    add_nbd_path,
    attach_disk,
    boot_guest,
    create_dm,
    expect_status,
    kill_path_until_event,
    load_table,
    resume,
    start_io,
    suspend,
    wait_guest_in_flight,
    wait_io,
)
from ..workloads import verify_writes
from .tables import mib, mirror

MIRROR_MB = 16
SECTORS = mib(MIRROR_MB)


async def _mirror_disk(rig: Rig, log: str | None) -> str:
    """A handle_errors mirror over legs m0, m1 (each its own image and NBD server), with
    a disk log on NBD path ``log`` or a core log; booted guest, disk attached."""
    for leg in ("m0", "m1"):
        await add_nbd_path(rig, leg, add_image(rig, leg, MIRROR_MB))
    if log is not None:
        await add_nbd_path(rig, log, add_image(rig, log, 1))
    await create_dm(rig, "mir", mirror(0, SECTORS, ["m0", "m1"], log=log))
    await boot_guest(rig)
    return await attach_disk(rig, "mir", "d0")


async def _writes(rig: Rig, disk: str) -> FioHandle:
    job = verify_writes(disk, size=f"{MIRROR_MB // 2}M", rate_iops=400)
    return await start_io(rig, job, flowing=100)


async def _log_killed_under_writes(rig: Rig) -> FioHandle:
    disk = await _mirror_disk(rig, log="lg")
    io = await _writes(rig, disk)
    await kill_path_until_event(rig, "lg", "mir", "mirror log device lg failed")
    await wait_guest_in_flight(rig, disk, "writes held after the log failed")
    await add_nbd_path(rig, "lg2", add_image(rig, "lg2", 1))
    return io


@scenario("seed000-mirror-log-failure-noflush", "seed 000: mirror with a disk log on an "
          "NBD path; the log's server killed under writes; the writes are held (no EIO); "
          "noflush suspend + load with a new log + resume: every write completes, verify "
          "passes", image_mb=1, family="seed000-log-failure",
          evidence={"mir": {"targets.0.parked": 1, "targets.0.parked-requeued": 1,
                            "pushed-back": 1}})
async def mirror_log_failure_noflush(rig: Rig) -> None:
    io = await _log_killed_under_writes(rig)
    await suspend(rig, "mir", noflush=True)
    await load_table(rig, "mir", mirror(0, SECTORS, ["m0", "m1"], log="lg2"))
    await resume(rig, "mir")
    await wait_io(rig, io)


@scenario("seed000-mirror-log-failure-flush-eio", "sibling: the same held writes, then a "
          "flush suspend: they fail and the guest gets EIO", expect="eio", image_mb=1,
          family="seed000-log-failure",
          evidence={"mir": {"targets.0.parked": 1, "targets.0.parked-failed": 1, "eio": 1}})
async def mirror_log_failure_flush(rig: Rig) -> None:
    io = await _log_killed_under_writes(rig)
    await suspend(rig, "mir", noflush=False)
    await load_table(rig, "mir", mirror(0, SECTORS, ["m0", "m1"], log="lg2"))
    await resume(rig, "mir")
    await wait_io(rig, io)


async def _leg_killed_under_writes(rig: Rig) -> FioHandle:
    disk = await _mirror_disk(rig, log=None)
    io = await _writes(rig, disk)
    await kill_path_until_event(rig, "m1", "mir", "mirror leg m1 failed")
    await expect_status(rig, "mir", " AD ")  # leg m1 Dead, m0 Alive
    await wait_guest_in_flight(rig, disk, "writes held after a leg failed")
    return io


@scenario("mirror-leg-failure-hold-repair", "dm-raid1 hold_bio: a mirror leg's server "
          "killed under writes with handle_errors: the leg shows D and writes are held "
          "without error; the repair (noflush suspend, a table over the surviving leg, "
          "resume) completes them: no EIO", image_mb=1, family="mirror-leg-failure",
          evidence={"mir": {"targets.0.leg-errors": 1, "targets.0.parked": 1,
                            "targets.0.parked-requeued": 1, "pushed-back": 1}})
async def mirror_leg_failure_hold_repair(rig: Rig) -> None:
    io = await _leg_killed_under_writes(rig)
    await suspend(rig, "mir", noflush=True)
    await load_table(rig, "mir", f"0 {SECTORS} linear m0 0")
    await resume(rig, "mir")
    await wait_io(rig, io)


@scenario("mirror-leg-failure-flush-suspend-eio", "sibling: the same held writes, then a "
          "flush suspend before the repair: they fail and the guest gets EIO", expect="eio",
          image_mb=1, family="mirror-leg-failure",
          evidence={"mir": {"targets.0.leg-errors": 1, "targets.0.parked": 1,
                            "targets.0.parked-failed": 1, "eio": 1}})
async def mirror_leg_failure_flush_suspend(rig: Rig) -> None:
    io = await _leg_killed_under_writes(rig)
    await suspend(rig, "mir", noflush=False)
    await load_table(rig, "mir", f"0 {SECTORS} linear m0 0")
    await resume(rig, "mir")
    await wait_io(rig, io)
