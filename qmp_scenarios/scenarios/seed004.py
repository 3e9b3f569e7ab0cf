"""Seed 004 (flush fan-out) with a real guest: a striped table over two multipath
devices (stacked, ``dm:``), fsync after every write. Each guest flush is sent to both
stripes; with stripe 1's only path dead its writes and flush copies wait for a path."""

from __future__ import annotations

from guests.fio import FioHandle

from ..registry import scenario
from ..rig import Rig
from ..steps import (
    add_dev,
    add_image,
    add_nbd_path,
    attach_disk,
    boot_guest,
    create_dm,
    kill_path,
    message,
    restore_path,
    start_io,
    wait_guest_flush_held,
    wait_io,
)
from ..workloads import verify_writes
from .common import mpath_table
from .tables import mib

STRIPE_MB = 8


async def _flushes_held_on_one_stripe(rig: Rig) -> FioHandle:
    for i in range(2):
        await add_nbd_path(rig, f"p{i}", add_image(rig, f"s{i}", STRIPE_MB))
        await create_dm(rig, f"mp{i}", mpath_table(0, mib(STRIPE_MB), [f"p{i}"]))
        await add_dev(rig, f"st{i}", f"dm:mp{i}")
    await create_dm(rig, "vol", f"0 {2 * mib(STRIPE_MB)} striped 2 128 st0 0 st1 0")
    await boot_guest(rig)
    disk = await attach_disk(rig, "vol", "d0")
    job = verify_writes(disk, size="2M", rate_iops=200, fsync_every=1)
    io = await start_io(rig, job, flowing=50)
    await kill_path(rig, "p1", wait_failed="mp1")
    await wait_guest_flush_held(rig, "its copy to stripe 1 waits for a path")
    return io


@scenario("seed004-striped-flush-fanout", "seed 004: fsync-heavy verified writes through "
          "a striped table over two multipath devices: every guest flush goes to both "
          "stripes; with stripe 1's path dead, its writes and flushes are held, and they "
          "complete when the path returns: no EIO", image_mb=1,
          family="seed004-striped-flush",
          evidence={"vol": {"flush-copies": "=2*flushes"},
                    "mp0": {"flush-copies": 1},
                    "mp1": {"flush-copies": 1, "targets.0.queued": 1}})
async def striped_flush_fanout(rig: Rig) -> None:
    io = await _flushes_held_on_one_stripe(rig)
    await restore_path(rig, "p1", wait_reinstated="mp1")
    await wait_io(rig, io)


@scenario("seed004-striped-flush-no-path-eio", "sibling: the same held writes and flushes, "
          "then fail_if_no_path on stripe 1's multipath: the guest gets EIO", expect="eio",
          image_mb=1, family="seed004-striped-flush",
          evidence={"vol": {"flush-copies": 2, "eio": 1},
                    "mp1": {"targets.0.queued": 1, "eio": 1}})
async def striped_flush_no_path(rig: Rig) -> None:
    io = await _flushes_held_on_one_stripe(rig)
    await message(rig, "mp1", "fail_if_no_path")
    await wait_io(rig, io)
