"""Failover scenarios of issue 6: the default demo, flush with no path (seed 004), path
churn, and hotplug under I/O; each with a sibling showing the check catching EIO."""

from __future__ import annotations

from guests.fio import FioHandle

from ..registry import scenario
from ..rig import Rig
from ..steps import (
    attach_disk,
    boot_guest,
    create_dm,
    detach_disk,
    guest_shell,
    kill_path,
    load_table,
    message,
    restore_path,
    resume,
    start_io,
    suspend,
    wait_guest_io_or_flush_held,
    wait_guest_writes,
    wait_io,
)
from ..workloads import verify_writes
from .common import MIB_SECTORS, mpath_disk, mpath_table


@scenario("demo", "the default: multipath over two real NBD paths; fio verify in the "
          "guest; one path killed; noflush suspend + reload + resume; the path comes back",
          family="path-failover",
          evidence={"mp": {"targets.0.path-failures": 1, "targets.0.paths.p0.ios": 1,
                           "targets.0.paths.p1.ios": 100}})
async def demo(rig: Rig) -> None:
    disk = await mpath_disk(rig, ["p0", "p1"])
    io = await start_io(rig, verify_writes(disk, size="48M", rate_iops=1500), flowing=200)
    await kill_path(rig, "p0", wait_failed="mp")
    rig.result.timings["failover_100_writes_after_kill"] = await wait_guest_writes(
        rig, disk, 100)
    await suspend(rig, "mp", noflush=True)
    await load_table(rig, "mp", mpath_table(0, rig.image_mb * MIB_SECTORS, ["p0", "p1"]))
    await resume(rig, "mp")
    await restore_path(rig, "p0", wait_reinstated="mp")
    await wait_guest_writes(rig, disk, 100)
    await wait_io(rig, io)


async def _flush_with_no_path(rig: Rig) -> FioHandle:
    disk = await mpath_disk(rig, ["p0", "p1"])
    io = await start_io(rig, verify_writes(disk, size="16M", rate_iops=500,
                                               fsync_every=4), flowing=100)
    await kill_path(rig, "p0", wait_failed="mp")
    await kill_path(rig, "p1", wait_failed="mp")
    # the checker may fail both paths between two guest writes: wait for one (or a
    # flush) to queue
    await wait_guest_io_or_flush_held(rig, disk, "queued with no path")
    return io


@scenario("flush-no-path-queued", "seed 004: writes and flushes (fsync) queued while no "
          "path is left (queue_if_no_path) complete once a path is back",
          family="flush-no-path",
          evidence={"mp": {"flush-copies": 1, "targets.0.path-failures": 2,
                           "targets.0.queued": 1}})
async def flush_no_path_queued(rig: Rig) -> None:
    io = await _flush_with_no_path(rig)
    await restore_path(rig, "p1", wait_reinstated="mp")
    await wait_io(rig, io)


@scenario("flush-no-path-fail-eio", "sibling: the same queued writes and flushes, then "
          "fail_if_no_path: the guest gets EIO", expect="eio",
          family="flush-no-path",
          evidence={"mp": {"flush-copies": 1, "targets.0.queued": 1, "eio": 1}})
async def flush_no_path_fail(rig: Rig) -> None:
    io = await _flush_with_no_path(rig)
    await message(rig, "mp", "fail_if_no_path")
    await wait_io(rig, io)


async def _churn(rig: Rig, disk: str, cycles: int) -> None:
    for i in range(cycles):
        path = f"p{i % 2}"
        await kill_path(rig, path, wait_failed="mp")
        await wait_guest_writes(rig, disk, 100)
        await restore_path(rig, path, wait_reinstated="mp")
        await wait_guest_writes(rig, disk, 100)


@scenario("path-churn", "blktests srp/002 style: paths killed and restored in turn, "
          "paced by path events and guest progress, while fio verify runs",
          family="path-failover",
          evidence={"mp": {"targets.0.path-failures": 4, "targets.0.paths.p0.ios": 100,
                           "targets.0.paths.p1.ios": 100}})
async def path_churn(rig: Rig) -> None:
    disk = await mpath_disk(rig, ["p0", "p1"])
    io = await start_io(rig, verify_writes(disk, size="64M", rate_iops=1000), flowing=100)
    await _churn(rig, disk, 4)
    await wait_io(rig, io)


@scenario("path-churn-no-queue-eio", "sibling: the same churn without queue_if_no_path, "
          "ending with both paths dead: the guest gets EIO", expect="eio",
          family="path-failover", evidence={"mp": {"targets.0.path-failures": 4, "eio": 1}})
async def path_churn_no_queue(rig: Rig) -> None:
    disk = await mpath_disk(rig, ["p0", "p1"], queue_if_no_path=False)
    io = await start_io(rig, verify_writes(disk, size="64M", rate_iops=1000), flowing=100)
    await _churn(rig, disk, 2)
    await kill_path(rig, "p0", wait_failed="mp")
    await kill_path(rig, "p1", wait_failed="mp")
    await wait_io(rig, io)


async def _hotplug_loop(rig: Rig, cycles: int) -> FioHandle:
    half = rig.image_mb * MIB_SECTORS // 2
    await rig.qmp("dev-add", {"name": "img", "uri": f"file:{rig.image}"})
    await create_dm(rig, "vol", f"0 {half} linear img 0")
    await create_dm(rig, "aux", f"0 {half} linear img {half}")
    await boot_guest(rig)
    disk = await attach_disk(rig, "vol", "d0")
    io = await start_io(rig, verify_writes(disk, size="48M", rate_iops=1500), flowing=100)
    for i in range(cycles):
        aux = await attach_disk(rig, "aux", f"hp{i}")
        await guest_shell(rig, f"read 1 MiB from {aux}",
                          f"dd if={aux} of=/dev/null bs=64k count=16 iflag=direct")
        await detach_disk(rig, f"hp{i}")
    return io


@scenario("hotplug-loop", "disks hotplugged and unplugged in a loop while fio verify "
          "runs on another disk",
          family="hotplug", evidence={"vol": {"ios": 1000}, "aux": {"ios": 4}})
async def hotplug_loop(rig: Rig) -> None:
    io = await _hotplug_loop(rig, 4)
    await wait_io(rig, io)


@scenario("hotplug-loop-error-eio", "sibling: the same loop, then the I/O disk's table is "
          "swapped for an error table: the guest gets EIO", expect="eio",
          family="hotplug", evidence={"vol": {"ios": 100, "eio": 1}, "aux": {"ios": 2}})
async def hotplug_loop_error(rig: Rig) -> None:
    io = await _hotplug_loop(rig, 2)
    await suspend(rig, "vol", noflush=True)
    await load_table(rig, "vol", f"0 {rig.image_mb * MIB_SECTORS // 2} error")
    await resume(rig, "vol")
    await wait_io(rig, io)
