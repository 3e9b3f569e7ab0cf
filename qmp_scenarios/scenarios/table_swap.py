"""The everyday table swap: a plain (flush) suspend, a new table loaded, resume, on a
healthy device under verified writes. The writes the guest sends while the device is
suspended wait on the deferred list and go to the new table."""

from __future__ import annotations

from guests.fio import FioHandle

from ..registry import scenario
from ..rig import Rig
from ..steps import (
    add_file_dev,
    attach_disk,
    boot_guest,
    create_dm,
    load_table,
    resume,
    start_io,
    suspend,
    wait_guest_in_flight,
    wait_io,
)
from ..workloads import verify_writes
from .tables import mib

IMAGE_MB = 8
HALF = mib(IMAGE_MB // 2)


async def _suspended_under_writes(rig: Rig) -> FioHandle:
    await add_file_dev(rig, "img", rig.image)
    await create_dm(rig, "vol", f"0 {2 * HALF} linear img 0")
    await boot_guest(rig)
    disk = await attach_disk(rig, "vol", "d0")
    job = verify_writes(disk, size=f"{IMAGE_MB}M", bs="16k", rate_iops=400)
    io = await start_io(rig, job, flowing=100)
    await suspend(rig, "vol", noflush=False)
    await wait_guest_in_flight(rig, disk, "new writes deferred while suspended")
    return io


@scenario("table-swap-flush-suspend", "the everyday table swap: flush suspend, load a "
          "table of two linear targets over the same image, resume, under verified "
          "writes: no EIO", image_mb=IMAGE_MB, family="table-swap",
          evidence={"vol": {"deferred-reissued": 1, "pieces.1": 1}})
async def table_swap_flush_suspend(rig: Rig) -> None:
    io = await _suspended_under_writes(rig)
    await load_table(rig, "vol", f"0 {HALF} linear img 0\n{HALF} {HALF} linear img {HALF}")
    await resume(rig, "vol")
    await wait_io(rig, io)


@scenario("table-swap-flush-suspend-error-eio", "sibling: the same swap, but the new "
          "table's second half is an error target: the guest gets EIO", expect="eio",
          image_mb=IMAGE_MB, family="table-swap",
          evidence={"vol": {"deferred-reissued": 1, "eio": 1}})
async def table_swap_error(rig: Rig) -> None:
    io = await _suspended_under_writes(rig)
    await load_table(rig, "vol", f"0 {HALF} linear img 0\n{HALF} {HALF} error")
    await resume(rig, "vol")
    await wait_io(rig, io)
