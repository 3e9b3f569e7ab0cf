"""The simplest end-to-end proofs: verified I/O through a linear table, and the sibling
that shows the same checks catching EIO (an error table)."""

from __future__ import annotations

from ..registry import scenario
from ..rig import Rig
from ..steps import attach_disk, boot_guest, create_dm, start_io, wait_io
from ..workloads import verify_writes

SECTORS = 256 * 2048  # the rig's 256 MiB image


@scenario("linear-verify", "fio randwrite+verify through a linear table over a file")
async def linear_verify(rig: Rig) -> None:
    await rig.qmp("dev-add", {"name": "img", "uri": f"file:{rig.image}"})
    await create_dm(rig, "vol", f"0 {SECTORS} linear img 0")
    await boot_guest(rig)
    disk = await attach_disk(rig, "vol", "d0")
    io = await start_io(rig, verify_writes(disk, size="32M", rate_iops=4000))
    await wait_io(rig, io)


@scenario("error-target-eio", "sibling of linear-verify: an error table; the guest must "
          "see EIO", expect="eio")
async def error_target_eio(rig: Rig) -> None:
    await create_dm(rig, "vol", f"0 {SECTORS} error")
    await boot_guest(rig)
    disk = await attach_disk(rig, "vol", "d0")
    io = await start_io(rig, verify_writes(disk, size="1M", rate_iops=4000))
    await wait_io(rig, io)
