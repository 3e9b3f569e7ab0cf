"""The simplest end-to-end proofs: verified I/O through a linear table, and the sibling
that shows the same checks catching EIO (an error table)."""

from __future__ import annotations

from backend.images import allocate_image

from ..registry import scenario
from ..rig import Rig
from ..steps import add_device, attach_disk, boot_guest, create_dm, start_io, wait_io
from ..workloads import verify_writes

SECTORS = 256 * 2048  # the rig's 256 MiB image


@scenario("linear-verify", "fio randwrite+verify through a linear table over a file",
          family="table-io", evidence={"vol": {"ios": 1000, "pieces.0": 1000}})
async def linear_verify(rig: Rig) -> None:
    await add_device(rig, "img", f"file:{rig.image}")
    await create_dm(rig, "vol", f"0 {SECTORS} linear img 0")
    await boot_guest(rig)
    disk = await attach_disk(rig, "vol", "d0")
    io = await start_io(rig, verify_writes(disk, size="32M", rate_iops=4000))
    await wait_io(rig, io)


@scenario("error-target-eio", "sibling of linear-verify: an error table; the guest must "
          "see EIO", expect="eio",
          family="table-io", evidence={"vol": {"eio": 1, "pieces.0": 1}})
async def error_target_eio(rig: Rig) -> None:
    await create_dm(rig, "vol", f"0 {SECTORS} error")
    await boot_guest(rig)
    disk = await attach_disk(rig, "vol", "d0")
    io = await start_io(rig, verify_writes(disk, size="1M", rate_iops=4000))
    await wait_io(rig, io)


@scenario("striped-verify", "fio verify through a striped table over two files (64 KiB "
          "chunks), so guest I/O is split across stripes",
          family="table-io", evidence={"vol": {"split": 100}})
async def striped_verify(rig: Rig) -> None:
    for i in range(2):
        img = rig.workdir / f"stripe{i}.img"
        allocate_image(img, 128 << 20)
        await add_device(rig, f"s{i}", f"file:{img}")
    await create_dm(rig, "vol", f"0 {SECTORS} striped 2 128 s0 0 s1 0")
    await boot_guest(rig)
    disk = await attach_disk(rig, "vol", "d0")
    io = await start_io(rig, verify_writes(disk, size="96M", rate_iops=2000, bs="256k"))
    await wait_io(rig, io)


@scenario("linear-boundary-verify", "fio verify across 31 linear|linear boundaries, each "
          "4 KiB off 64 KiB alignment and mapped to a shuffled place in the file, so "
          "guest writes are split between targets",
          family="table-io", evidence={"vol": {"split": 31, "pieces.0": 1, "pieces.31": 1}})
async def linear_boundary_verify(rig: Rig) -> None:
    await add_device(rig, "img", f"file:{rig.image}")
    await create_dm(rig, "vol", boundary_table(SECTORS, 32))
    await boot_guest(rig)
    disk = await attach_disk(rig, "vol", "d0")
    io = await start_io(rig, verify_writes(disk, size="256M", rate_iops=3000, bs="256k"))
    await wait_io(rig, io)


def boundary_table(sectors: int, pieces: int) -> str:
    """``pieces`` linear targets of one file, 8 sectors longer than an even share (so no
    boundary is 64 KiB aligned), mapped back to front (so a split I/O's pieces land far
    apart in the file)."""
    share = sectors // pieces + 8
    lines, start = [], 0
    while start < sectors:
        length = min(share, sectors - start)
        lines.append(f"{start} {length} linear img {sectors - start - length}")
        start += length
    return "\n".join(lines)
