"""The disk itself under a real guest (issue 13): two virtqueues carrying I/O from two
vCPUs through a noflush suspend + reload, and a reload to a bigger table that the guest
sees as a new capacity without a re-plug."""

from __future__ import annotations

from dataclasses import replace

from guests.fio import FioHandle
from guests.fio_job import FioJob

from ..registry import scenario
from ..rig import Rig
from ..steps import (
    add_device,
    attach_disk,
    boot_guest,
    create_dm,
    guest_shell,
    load_table,
    resume,
    start_io,
    suspend,
    wait_guest_writes,
    wait_io,
)
from ..workloads import verify_writes
from .common import MIB_SECTORS

# -- multiqueue -------------------------------------------------------------------------


def two_queue_job(disk: str) -> FioJob:
    """Two verified-write jobs, one pinned to each vCPU (cpus_allowed_policy=split), each
    on its own 8 MiB: blk-mq maps each CPU to its own virtqueue."""
    return FioJob(
        filename=disk, rw="randwrite", bs="4k", iodepth=8, size="8M", numjobs=2,
        verify=True, verify_backlog=128, name="mq",
        extra=(("cpus_allowed", "0-1"), ("cpus_allowed_policy", "split"),
               ("offset_increment", "8M"), ("rate_iops", "400")))


async def queue_ios(rig: Rig, export_id: str) -> list[int]:
    """query-exports' per-queue request counts of ``export_id``, as a step."""
    async with rig.rec.step(f"per-queue I/O of {export_id}") as st:
        exports = await rig.qmp("query-exports")
        counts = [int(n) for n in next(e for e in exports
                                       if e["id"] == export_id)["queue-ios"]]
        st.detail = " ".join(f"q{i}={n}" for i, n in enumerate(counts))
    return counts


async def _two_queues(rig: Rig) -> tuple[int, str, FioHandle]:
    sectors = rig.image_mb * MIB_SECTORS
    await add_device(rig, "img", f"file:{rig.image}")
    await create_dm(rig, "vol", f"0 {sectors} linear img 0")
    await boot_guest(rig, vcpus=2)
    disk = await attach_disk(rig, "vol", "d0", num_queues=2)
    io = await start_io(rig, two_queue_job(disk), flowing=200)
    return sectors, disk, io


def _grew(before: list[int], after: list[int]) -> None:
    if len(after) != 2 or any(a <= b for a, b in zip(after, before, strict=True)):
        raise RuntimeError(f"both queues must carry I/O: {before} -> {after}")


@scenario("multiqueue", "2 vCPUs, num-queues=2, two verified-write fio jobs pinned one "
          "per CPU; a noflush suspend + reload + resume while both queues are busy; both "
          "queues carry I/O before and after (query-exports queue-ios); no EIO",
          family="multiqueue",
          evidence={"export:d0": {"queue-ios.0": 500, "queue-ios.1": 500},
                    "vol": {"ios": 1000}})
async def multiqueue(rig: Rig) -> None:
    sectors, disk, io = await _two_queues(rig)
    before = await queue_ios(rig, "d0")
    await suspend(rig, "vol", noflush=True)
    await load_table(rig, "vol", f"0 {sectors} linear img 0")
    await resume(rig, "vol")
    await wait_guest_writes(rig, disk, 200)
    _grew(before, await queue_ios(rig, "d0"))
    await wait_io(rig, io)
    _grew([0, 0], await queue_ios(rig, "d0"))


@scenario("multiqueue-error-eio", "sibling: the same two busy queues, then an error "
          "table is loaded in the noflush suspend: the guest gets EIO", expect="eio",
          family="multiqueue",
          evidence={"export:d0": {"queue-ios.0": 50, "queue-ios.1": 50},
                    "vol": {"eio": 1}})
async def multiqueue_error(rig: Rig) -> None:
    sectors, _, io = await _two_queues(rig)
    _grew([0, 0], await queue_ios(rig, "d0"))
    await suspend(rig, "vol", noflush=True)
    await load_table(rig, "vol", f"0 {sectors} error")
    await resume(rig, "vol")
    await wait_io(rig, io)


# -- resize -----------------------------------------------------------------------------


async def _grow(rig: Rig, grown_part: str) -> str:
    """A linear device over the first half of the image, seen by the guest; then a
    noflush suspend, a table twice as big (its second half ``grown_part``: a target
    line's type and arguments), a resume; waits until the guest's
    /sys/block/vdX/size shows the new capacity (the config-change interrupt; no
    re-plug). Returns the guest's /dev path."""
    total = rig.image_mb * MIB_SECTORS
    half = total // 2
    await add_device(rig, "img", f"file:{rig.image}")
    await create_dm(rig, "vol", f"0 {half} linear img 0")
    await boot_guest(rig)
    disk = await attach_disk(rig, "vol", "d0")
    name = disk.rsplit("/", 1)[-1]
    size = await guest_shell(rig, "guest capacity before", f"cat /sys/block/{name}/size")
    if int(size) != half:
        raise RuntimeError(f"guest sees {size.strip()} sectors, not {half}")
    await suspend(rig, "vol", noflush=True)
    await load_table(rig, "vol", f"0 {half} linear img 0\n{half} {half} {grown_part}")
    await resume(rig, "vol")
    await guest_shell(rig, f"wait until the guest sees {total} sectors",
                      f"while [ $(cat /sys/block/{name}/size) -ne {total} ]; "
                      f"do usleep 20000; done", timeout=30)
    return disk


def _past_old_end(disk: str, half_bytes: int) -> FioJob:
    job = verify_writes(disk, size="8M", rate_iops=1000)
    return replace(job, extra=(*job.extra, ("offset", str(half_bytes))))


@scenario("resize", "a table reload to a device twice as big, resumed: the guest sees "
          "the new capacity in /sys/block/vdX/size without a re-plug (virtio config "
          "change), and verified writes past the old end pass", family="resize",
          evidence={"export:d0": {"config-changes": 1}, "vol": {"pieces.1": 100}})
async def resize(rig: Rig) -> None:
    half_sectors = rig.image_mb * MIB_SECTORS // 2
    disk = await _grow(rig, f"linear img {half_sectors}")
    io = await start_io(rig, _past_old_end(disk, half_sectors * 512))
    await wait_io(rig, io)


@scenario("resize-error-eio", "sibling: the same resize with an error target in the "
          "grown part: the guest's writes past the old end get EIO", expect="eio",
          family="resize",
          evidence={"export:d0": {"config-changes": 1}, "vol": {"pieces.1": 1, "eio": 1}})
async def resize_error(rig: Rig) -> None:
    half_sectors = rig.image_mb * MIB_SECTORS // 2
    disk = await _grow(rig, "error")
    io = await start_io(rig, _past_old_end(disk, half_sectors * 512))
    await wait_io(rig, io)
