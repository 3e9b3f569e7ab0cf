"""Fault targets under real guests (issue 13): flakey dropping writes (the guest's own
verify must catch it) and erroring reads under a multipath that fails over; delay holding
writes through a noflush suspend; dust failing reads of bad blocks until the guest
rewrites them. Every "no EIO" family has its sibling showing the check catching it."""

from __future__ import annotations

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
    message,
    resume,
    start_io,
    suspend,
    wait_io,
)
from ..workloads import verify_writes, wait_in_flight_command
from .common import MIB_SECTORS, mpath_over_dm


async def _image(rig: Rig) -> int:
    """The rig's image as device ``img``; returns its size in sectors."""
    await add_device(rig, "img", f"file:{rig.image}")
    return rig.image_mb * MIB_SECTORS


# -- flakey -----------------------------------------------------------------------------


async def _verified_writes_on_flakey(rig: Rig, feature: str) -> None:
    """Verified writes from the guest on ``fl``, flakey over the image (1 s up, 1 s
    down) with its one ``feature`` while down, to the end."""
    sectors = await _image(rig)
    await create_dm(rig, "fl", f"0 {sectors} flakey img 0 1 1 1 {feature}")
    await boot_guest(rig)
    disk = await attach_disk(rig, "fl", "d0")
    io = await start_io(rig, verify_writes(disk, size="8M", rate_iops=1000))
    await wait_io(rig, io)


@scenario("flakey-drop-writes", "flakey with drop_writes (1 s up, 1 s down) under "
          "verified writes: the writes dropped while down complete as if done, so the "
          "device reports no error and only the guest's own verify can catch the loss",
          expect="verify-fails", family="flakey",
          evidence={"fl": {"targets.0.faults": 1, "ios": 100}})
async def flakey_drop_writes(rig: Rig) -> None:
    await _verified_writes_on_flakey(rig, "drop_writes")


async def _flakey_reads_mpath(rig: Rig, *, queue_if_no_path: bool) -> str:
    """Multipath over two stacked paths: ``f0``, flakey with error_reads (2 s up, 1 s
    down), and ``l1``, linear, both over the rig's image."""
    sectors = await _image(rig)
    return await mpath_over_dm(rig, {"f0": f"0 {sectors} flakey img 0 2 1 1 error_reads",
                                     "l1": f"0 {sectors} linear img 0"},
                               queue_if_no_path=queue_if_no_path)


@scenario("flakey-error-reads-failover", "twin of flakey-drop-writes: flakey failing "
          "reads while down, as one path of a multipath whose other path is healthy: "
          "verified writes and reads fail over, no EIO, verify passes",
          family="flakey",
          evidence={"f0": {"targets.0.faults": 1},
                    "mp": {"targets.0.path-failures": 1, "targets.0.paths.pf0.ios": 1,
                           "targets.0.paths.pl1.ios": 100}})
async def flakey_error_reads_failover(rig: Rig) -> None:
    disk = await _flakey_reads_mpath(rig, queue_if_no_path=True)
    io = await start_io(rig, verify_writes(disk, size="8M", rate_iops=1000))
    await wait_io(rig, io)


@scenario("flakey-error-reads-eio", "sibling: flakey failing reads while down, alone "
          "(no multipath): the guest's verify reads get EIO", expect="eio",
          family="flakey", evidence={"fl": {"targets.0.faults": 1, "eio": 1}})
async def flakey_error_reads_eio(rig: Rig) -> None:
    await _verified_writes_on_flakey(rig, "error_reads")


# -- delay ------------------------------------------------------------------------------

WRITE_DELAY_MS = 4000
"""Writes are held this long: a suspend that waited them out would take as long."""


async def _held_writes(rig: Rig) -> tuple[int, FioHandle]:
    """A delay device holding writes for WRITE_DELAY_MS, a guest writing to it, and a
    noflush suspend while writes are held: presuspend must issue them at once."""
    sectors = await _image(rig)
    await create_dm(rig, "dl", f"0 {sectors} delay img 0 0 img 0 {WRITE_DELAY_MS}")
    await boot_guest(rig)
    disk = await attach_disk(rig, "dl", "d0")
    io = await start_io(rig, verify_writes(disk, size="4M", rate_iops=2000, iodepth=16))
    await guest_shell(rig, "wait until writes are held in flight",
                      wait_in_flight_command(disk))
    # the suspend's own timeout is half the delay: waiting the writes out fails it
    await suspend(rig, "dl", noflush=True, timeout=WRITE_DELAY_MS / 2000)
    return sectors, io


@scenario("delay-suspend", "delay holding writes for 4 s under verified writes; a "
          "noflush suspend issues the held writes at presuspend (it must end in half the "
          "delay, never wait it out); a linear table without delay is loaded and resumed; "
          "no EIO, verify passes", family="delay-suspend",
          evidence={"dl": {"targets.0.delayed": 1, "targets.0.issued-early": 1,
                           "ios": 100}})
async def delay_suspend(rig: Rig) -> None:
    sectors, io = await _held_writes(rig)
    await load_table(rig, "dl", f"0 {sectors} linear img 0")
    await resume(rig, "dl")
    await wait_io(rig, io)


@scenario("delay-suspend-error-eio", "sibling: the same held writes and noflush "
          "suspend, then an error table is loaded: the guest gets EIO", expect="eio",
          family="delay-suspend",
          evidence={"dl": {"targets.0.issued-early": 1, "eio": 1}})
async def delay_suspend_error(rig: Rig) -> None:
    sectors, io = await _held_writes(rig)
    await load_table(rig, "dl", f"0 {sectors} error")
    await resume(rig, "dl")
    await wait_io(rig, io)


# -- dust -------------------------------------------------------------------------------

BAD_BLOCKS = range(64, 72)
"""4 KiB blocks 64-71 (256-288 KiB into the disk) are made bad."""


async def _bad_blocks(rig: Rig) -> str:
    sectors = await _image(rig)
    await create_dm(rig, "du", f"0 {sectors} dust img 0 4096")
    await boot_guest(rig)
    disk = await attach_disk(rig, "du", "d0")
    for block in BAD_BLOCKS:
        await message(rig, "du", f"addbadblock {block}")
    await message(rig, "du", "enable")
    return disk


@scenario("dust-bad-blocks", "dust with 8 bad blocks added by message: the guest's "
          "fio read of the first MiB gets EIO; the guest then rewrites those blocks, "
          "which takes them off the list, and reads them back without error",
          expect="eio", family="dust-bad-blocks",
          evidence={"du": {"targets.0.faults": 1, "targets.0.rewritten": 8, "eio": 1}})
async def dust_bad_blocks(rig: Rig) -> None:
    disk = await _bad_blocks(rig)
    io = await start_io(rig, FioJob(filename=disk, rw="read", bs="4k", iodepth=8,
                                    size="1M", name="read"))
    await wait_io(rig, io)
    first, count = BAD_BLOCKS[0], len(BAD_BLOCKS)
    await guest_shell(rig, "rewrite the bad blocks",
                      f"dd if=/dev/zero of={disk} bs=4k seek={first} count={count} "
                      f"oflag=direct")
    await guest_shell(rig, "read the rewritten blocks back",
                      f"dd if={disk} of=/dev/null bs=4k skip={first} count={count} "
                      f"iflag=direct")
    reply = await message(rig, "du", "countbadblocks")
    if not reply.startswith("countbadblocks: 0 "):
        raise RuntimeError(f"bad blocks left after the rewrite: {reply!r}")


@scenario("dust-bad-blocks-rewritten", "sibling with no EIO: the same bad blocks, but "
          "the guest's verified writes cover them before any read: each write takes its "
          "block off the list, every verify read passes", family="dust-bad-blocks",
          evidence={"du": {"targets.0.rewritten": 8, "ios": 256}})
async def dust_bad_blocks_rewritten(rig: Rig) -> None:
    disk = await _bad_blocks(rig)
    io = await start_io(rig, verify_writes(disk, size="1M", rate_iops=1000))
    await wait_io(rig, io)
    reply = await message(rig, "du", "countbadblocks")
    if not reply.startswith("countbadblocks: 0 "):
        raise RuntimeError(f"bad blocks left after the writes: {reply!r}")
