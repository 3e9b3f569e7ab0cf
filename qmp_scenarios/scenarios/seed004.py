"""Seed 004 (flush fan-out) with a real guest: a striped table over two multipath
devices (stacked, ``dm:``), fsync after every write. The guest writes only to stripe 0's
first chunk, so stripe 1 sees nothing but the flush copies the fan-out sends it: with
its only path dead, each guest flush waits for a path because of stripe 1 alone.

Why the writes stay off stripe 1: fio issues an fsync only once its writes are done, so
a held write on stripe 1 would keep any flush from being issued, and whether the kill met
a write or a flush first would decide the run (it did, 2 runs in 10)."""

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
CHUNK_MB = 1
"""The stripe chunk; the guest writes only the first one (stripe 0's)."""


async def _flushes_held_on_one_stripe(rig: Rig) -> FioHandle:
    for i in range(2):
        await add_nbd_path(rig, f"p{i}", add_image(rig, f"s{i}", STRIPE_MB))
        await create_dm(rig, f"mp{i}", mpath_table(0, mib(STRIPE_MB), [f"p{i}"]))
        await add_dev(rig, f"st{i}", f"dm:mp{i}")
    await create_dm(rig, "vol", f"0 {2 * mib(STRIPE_MB)} striped 2 {mib(CHUNK_MB)} st0 0 st1 0")
    await boot_guest(rig)
    disk = await attach_disk(rig, "vol", "d0")
    job = verify_writes(disk, size=f"{CHUNK_MB}M", rate_iops=200, fsync_every=1)
    io = await start_io(rig, job, flowing=50)
    await kill_path(rig, "p1", wait_failed="mp1")
    await wait_guest_flush_held(rig, "its copy to stripe 1 waits for a path")
    return io


@scenario("seed004-striped-flush-fanout", "seed 004: fsync-heavy verified writes through "
          "a striped table over two multipath devices: every guest flush goes to both "
          "stripes; the writes land on stripe 0 only, so with stripe 1's path dead the "
          "flush copies alone are held there, and they complete when the path returns: "
          "no EIO", image_mb=1,
          family="seed004-striped-flush",
          evidence={"vol": {"flush-copies": "=2*flushes"},
                    "mp0": {"flush-copies": 1},
                    "mp1": {"flush-copies": 1, "targets.0.queued": 1}})
async def striped_flush_fanout(rig: Rig) -> None:
    io = await _flushes_held_on_one_stripe(rig)
    await restore_path(rig, "p1", wait_reinstated="mp1")
    await wait_io(rig, io)


@scenario("seed004-striped-flush-no-path-eio", "sibling: the same held flush copies, "
          "then fail_if_no_path on stripe 1's multipath: the guest gets EIO", expect="eio",
          image_mb=1, family="seed004-striped-flush",
          evidence={"vol": {"flush-copies": 2, "eio": 1},
                    "mp1": {"targets.0.queued": 1, "eio": 1}})
async def striped_flush_no_path(rig: Rig) -> None:
    io = await _flushes_held_on_one_stripe(rig)
    await message(rig, "mp1", "fail_if_no_path")
    await wait_io(rig, io)
