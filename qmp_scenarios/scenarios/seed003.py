"""Seed 003 (two-stage requeue) with a real guest: every guest write is split between a
multipath target and a linear one; with no path left the multipath pieces wait, the
linear pieces complete, and what the suspend does to the waiting pieces decides the
guest's fate."""

from __future__ import annotations

from guests.fio import FioHandle

from ..registry import scenario
from ..rig import Rig
from ..steps import (
    add_file_dev,
    add_image,
    add_nbd_path,
    attach_disk,
    boot_guest,
    create_dm,
    kill_path,
    load_table,
    resume,
    start_io,
    suspend,
    wait_guest_in_flight,
    wait_io,
)
from ..workloads import verify_writes
from .tables import alternating, linear, mib, multipath

DEVICE_MB = 4
PIECE = 96
"""48 KiB targets: each 64 KiB guest write spans a multipath and a linear target."""


def split_table(path: str) -> str:
    return alternating(mib(DEVICE_MB), PIECE, multipath([path]), linear("img"))


async def _split_pieces_waiting(rig: Rig) -> FioHandle:
    """Verified 64 KiB writes, each split; the multipath path is killed, so the guest's
    writes hang on their multipath pieces while their linear pieces have completed."""
    await add_nbd_path(rig, "a0", add_image(rig, "a", DEVICE_MB), direct=False)
    await add_file_dev(rig, "img", rig.image)
    await create_dm(rig, "mp", split_table("a0"))
    await boot_guest(rig)
    disk = await attach_disk(rig, "mp", "d0")
    job = verify_writes(disk, size=f"{DEVICE_MB}M", bs="64k", rate_iops=20)
    io = await start_io(rig, job, flowing=8)
    await kill_path(rig, "a0", wait_failed="mp")
    await wait_guest_in_flight(rig, disk, "multipath pieces queued with no path")
    await add_nbd_path(rig, "a2", rig.workdir / "a.img", direct=False)
    return io


@scenario("seed003-split-requeue-noflush-load", "seed 003: split writes whose multipath "
          "piece waits with no path while the linear piece completed; noflush suspend "
          "(the pieces are requeued, rewound and pushed back), load with a fresh path, "
          "resume: each write completes once, verify passes", image_mb=DEVICE_MB,
          family="seed003-split-requeue",
          evidence={"mp": {"split": 1, "pieces.0": 1, "pieces.1": 1, "requeued": 1,
                           "pushed-back": 1}})
async def split_requeue_noflush_load(rig: Rig) -> None:
    io = await _split_pieces_waiting(rig)
    await suspend(rig, "mp", noflush=True)
    await load_table(rig, "mp", split_table("a2"))
    await resume(rig, "mp")
    await wait_io(rig, io)


@scenario("seed003-split-flush-suspend-eio", "sibling: the same waiting split pieces, "
          "then a flush suspend: the pieces fail and the guest gets EIO", expect="eio",
          image_mb=DEVICE_MB, family="seed003-split-requeue",
          evidence={"mp": {"split": 1, "eio": 1}})  # fio stops at its first error
async def split_flush_suspend_eio(rig: Rig) -> None:
    io = await _split_pieces_waiting(rig)
    await suspend(rig, "mp", noflush=False)
    await load_table(rig, "mp", split_table("a2"))
    await resume(rig, "mp")
    await wait_io(rig, io)
