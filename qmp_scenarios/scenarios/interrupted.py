"""Seed 001's interrupted suspend with I/O really on the pushback list: a multipath
target with no path has pushed back its queued writes and a mirror target holds writes
in flight on a SIGSTOPped leg, so a noflush suspend times out. The pushed-back writes
are reissued as the device unblocks; a REQUEUE that arrives after the interruption -
the stuck leg dies and the mirror hands its writes back - is EIO (DESIGN: "an I/O whose
REQUEUE arrives after the interruption gets EIO")."""

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
    kill_path,
    kill_path_until_event,
    pause_path,
    restore_path,
    start_io,
    suspend_times_out,
    wait_guest_in_flight,
    wait_io,
)
from ..workloads import verify_writes
from .common import mpath_table
from .tables import mib, mirror

HALF_MB = 4
HALF = mib(HALF_MB)


async def _suspend_interrupted_with_pushback(rig: Rig) -> FioHandle:
    """multipath [0, HALF) over p0 and a mirror [HALF, 2*HALF) over m0, m1; verified
    writes over both; p0 and m1 paused (writes stuck on both targets), p0 killed (its
    writes wait in multipath for a path); a noflush suspend pushes them back and times
    out on the mirror's stuck writes."""
    await add_nbd_path(rig, "p0", add_image(rig, "a", HALF_MB))
    for leg in ("m0", "m1"):
        # no NBD request timeout: the paused leg fails only when this scenario says so
        await add_nbd_path(rig, leg, add_image(rig, leg, HALF_MB), timeout=0)
    await create_dm(rig, "mp", "\n".join([mpath_table(0, HALF, ["p0"]),
                                          mirror(HALF, HALF, ["m0", "m1"])]))
    await boot_guest(rig)
    disk = await attach_disk(rig, "mp", "d0")
    # no rate limit, so fio keeps 16 writes in flight; no verify reads until the end:
    # what gets stuck is writes, spread over both targets
    job = verify_writes(disk, size=f"{2 * HALF_MB}M", rate_iops=100_000, iodepth=16,
                        backlog=None)
    io = await start_io(rig, job, flowing=100)
    mark = rig.dm.mark()  # the checker may fail the paused p0 before the kill
    await pause_path(rig, "p0", True)
    await pause_path(rig, "m1", True)
    await wait_guest_in_flight(rig, disk, "stuck on both targets", at_least=12)
    await kill_path(rig, "p0", wait_failed="mp", since=mark)
    await suspend_times_out(rig, "mp", noflush=True, timeout=3)
    return io


@scenario("seed001-interrupted-suspend-pushback", "seed 001: a noflush suspend times out "
          "while multipath's queued writes are pushed back and a mirror leg holds writes "
          "in flight (SIGSTOP); the pushed-back writes are reissued, the leg continues and "
          "the path returns: no EIO, verify passes", image_mb=1,
          family="seed001-interrupted-suspend",
          evidence={"mp": {"interrupted-suspends": 1, "pushed-back": 1,
                           "deferred-reissued": 1}})
async def interrupted_suspend_pushback(rig: Rig) -> None:
    io = await _suspend_interrupted_with_pushback(rig)
    await pause_path(rig, "m1", False)
    await restore_path(rig, "p0", wait_reinstated="mp")
    await wait_io(rig, io)


@scenario("seed001-interrupted-suspend-late-requeue-eio", "sibling: the same interrupted "
          "suspend, then the stuck leg dies: the mirror hands its writes back (REQUEUE) "
          "after the interruption, and the core fails them: the guest gets EIO",
          expect="eio", image_mb=1, family="seed001-interrupted-suspend",
          evidence={"mp": {"interrupted-suspends": 1, "pushed-back": 1,
                           "deferred-reissued": 1, "targets.1.parked-failed": 1,
                           "eio": 1}})
async def interrupted_suspend_late_requeue(rig: Rig) -> None:
    io = await _suspend_interrupted_with_pushback(rig)
    await kill_path_until_event(rig, "m1", "mp", "mirror leg m1 failed")
    await restore_path(rig, "p0", wait_reinstated="mp")
    await wait_io(rig, io)
