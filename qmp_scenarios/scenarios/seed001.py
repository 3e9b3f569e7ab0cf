"""Seed 001's test matrix ("Test results"), every case with a real guest doing verified
writes through multipath over NBD paths whose servers are really killed.

EIO must reach the guest exactly where the matrix says: with no path and no
queue_if_no_path, and for queued I/O on a plain (flush) suspend; nowhere else.
"""

from __future__ import annotations

from guests.fio import FioHandle

from ..registry import scenario
from ..rig import Rig
from ..steps import (
    add_nbd_path,
    guest_shell,
    kill_path,
    load_table,
    pause_path,
    restore_path,
    resume,
    start_io,
    suspend,
    suspend_times_out,
    wait_guest_in_flight,
    wait_io,
)
from ..workloads import (
    nomerges_command,
    verify_writes,
    wait_for_sectors_written_command,
    wait_in_flight_command,
)
from .common import (
    MIB_SECTORS,
    SPAN_BLOCKS,
    SpanningDisk,
    mpath_disk,
    mpath_table,
    spanning_mpath_disk,
)


async def _kill_all(rig: Rig, paths: list[str], dm: str = "mp") -> None:
    for p in paths:
        await kill_path(rig, p, wait_failed=dm)


async def _writes_then_no_path(rig: Rig, *, queue_if_no_path: bool = True) -> FioHandle:
    """The matrix's no-path start: multipath over p0 and p1, verified writes flowing,
    then both paths' servers killed (each failed in the table before the next). With
    queueing on, returns once a guest write waits in multipath: the checker may fail
    both paths between two guest writes, and a suspend then would find nothing queued."""
    disk = await mpath_disk(rig, ["p0", "p1"], queue_if_no_path=queue_if_no_path)
    io = await start_io(rig, verify_writes(disk, size="32M", rate_iops=1000), flowing=100)
    await _kill_all(rig, ["p0", "p1"])
    if queue_if_no_path:
        await wait_guest_in_flight(rig, disk, "writes queued with no path")
    return io


@scenario("seed001-valid-paths", "regression: I/O succeeds while valid paths exist",
          family="seed001-no-path",
          evidence={"mp": {"targets.0.paths.p0.ios": 100, "targets.0.paths.p1.ios": 100}})
async def valid_paths(rig: Rig) -> None:
    disk = await mpath_disk(rig, ["p0", "p1"], queue_if_no_path=False)
    io = await start_io(rig, verify_writes(disk, size="24M", rate_iops=3000))
    await wait_io(rig, io)


@scenario("seed001-no-path-eio", "regression: no valid path and no queue_if_no_path: the "
          "guest gets EIO", expect="eio",
          family="seed001-no-path", evidence={"mp": {"targets.0.path-failures": 2, "eio": 1}})
async def no_path_eio(rig: Rig) -> None:
    io = await _writes_then_no_path(rig, queue_if_no_path=False)
    await wait_io(rig, io)


@scenario("seed001-queue-if-no-path", "regression: with queue_if_no_path, I/O is queued "
          "while no path is left and completes when a path returns",
          family="seed001-no-path",
          evidence={"mp": {"targets.0.path-failures": 2, "targets.0.queued": 1}})
async def queue_if_no_path(rig: Rig) -> None:
    io = await _writes_then_no_path(rig)
    await restore_path(rig, "p0", wait_reinstated="mp")
    await wait_io(rig, io)


@scenario("seed001-flush-suspend-eio", "regression: queued I/O fails when suspend is "
          "issued without noflush", expect="eio",
          family="seed001-suspend", evidence={"mp": {"targets.0.queued": 1, "eio": 1}})
async def flush_suspend_eio(rig: Rig) -> None:
    io = await _writes_then_no_path(rig)
    await suspend(rig, "mp", noflush=False)
    await resume(rig, "mp")
    # fio stops at its first error but waits for its other writes, which queue again
    # once resume restores queue_if_no_path: bring a path back so they can complete
    await restore_path(rig, "p0", wait_reinstated="mp")
    await wait_io(rig, io)


async def _split_write_held(rig: Rig) -> tuple[SpanningDisk, FioHandle]:
    """Target 0's paths killed, then fio writes the spanning region once: every block
    but the straddling one completes on target 1, and so does the straddling write's
    target-1 piece, while its 4 KiB target-0 piece waits in multipath for a path (seed
    003's split original with one piece held). Returns once the guest has completed
    every other write, so the held piece is certainly there."""
    span = await spanning_mpath_disk(rig)
    await _kill_all(rig, ["a0", "a1"])
    # No merging: a neighbour merged into the straddling write would wait with its held
    # piece, and the count of completed sectors below would never be reached.
    await guest_shell(rig, "no request merging on the spanning disk",
                      nomerges_command(span.disk))
    io = await start_io(rig, verify_writes(span.disk, size=span.region_size,
                                           offset=span.region_offset, rate_iops=None,
                                           bs="64k"))
    others = (SPAN_BLOCKS - 1) * 128
    await guest_shell(rig, f"wait until the {SPAN_BLOCKS - 1} unsplit writes completed",
                      wait_for_sectors_written_command(span.disk, others))
    return span, io


@scenario("seed001-flush-suspend-spanning-eio", "regression: a write split across two "
          "multipath targets, its piece on the target with no path queued: a flush "
          "suspend fails it (the other piece succeeded) and the guest gets EIO",
          expect="eio", family="seed001-spanning",
          evidence={"mp": {"split": 1, "pieces.0": 1, "pieces.1": 1, "targets.0.queued": 1,
                           "eio": 1}})
async def flush_suspend_spanning_eio(rig: Rig) -> None:
    _, io = await _split_write_held(rig)
    await suspend(rig, "mp", noflush=False)
    await resume(rig, "mp")
    # fio stops at the error; should it still read the held block back, a path is there
    await restore_path(rig, "a0", wait_reinstated="mp")
    await wait_io(rig, io)


@scenario("seed001-noflush-holds-io", "pushback: a noflush suspend holds queued I/O; a "
          "resume without path recovery queues it again; path recovery completes it",
          family="seed001-suspend",
          evidence={"mp": {"targets.0.requeued": 1, "pushed-back": 1, "deferred-reissued": 1}})
async def noflush_holds_io(rig: Rig) -> None:
    io = await _writes_then_no_path(rig)
    await suspend(rig, "mp", noflush=True)
    await resume(rig, "mp")
    await restore_path(rig, "p1", wait_reinstated="mp")
    await wait_io(rig, io)


@scenario("seed001-noflush-load-fresh-path", "pushback: with no path left, noflush "
          "suspend + load of a table with a fresh path + resume completes the queued I/O",
          family="seed001-suspend",
          evidence={"mp": {"pushed-back": 1, "deferred-reissued": 1, "targets.0.paths.p2.ios": 1}})
async def noflush_load_fresh_path(rig: Rig) -> None:
    io = await _writes_then_no_path(rig)
    await add_nbd_path(rig, "p2")
    await suspend(rig, "mp", noflush=True)
    await load_table(rig, "mp", mpath_table(0, rig.image_mb * MIB_SECTORS, ["p2"]))
    await resume(rig, "mp")
    await wait_io(rig, io)


@scenario("seed001-noflush-load-spanning", "pushback + two-stage requeue (seed 003): a "
          "write split across two multipath targets, its piece on the target with no path "
          "queued; noflush suspend (the piece is requeued, then pushed back), load with a "
          "fresh path, resume: the write completes once, no EIO",
          family="seed001-spanning",
          evidence={"mp": {"split": 1, "pieces.0": 1, "pieces.1": 1, "targets.0.queued": 1,
                           "requeued": 1, "pushed-back": 1, "deferred-reissued": 1,
                           "targets.0.paths.a2.ios": 1}})
async def noflush_load_spanning(rig: Rig) -> None:
    span, io = await _split_write_held(rig)
    await add_nbd_path(rig, "a2", span.images[0])
    await suspend(rig, "mp", noflush=True)
    total = rig.image_mb * MIB_SECTORS
    await load_table(rig, "mp", "\n".join([
        mpath_table(0, span.boundary, ["a2"]),
        mpath_table(span.boundary, total - span.boundary, ["b0", "b1"])]))
    await resume(rig, "mp")
    await wait_io(rig, io)


@scenario("seed001-noflush-suspend-timeout", "error path: a noflush suspend that times "
          "out (I/O stuck on a paused path) leaves the device ACTIVE; nothing reaches the "
          "guest as an error (no path checker: it would fail the hung path, and the "
          "suspend would push the I/O back and succeed)",
          path_checker=False,
          family="seed001-suspend", evidence={"mp": {"interrupted-suspends": 1}})
async def noflush_suspend_timeout(rig: Rig) -> None:
    disk = await mpath_disk(rig, ["p0"])
    io = await start_io(rig, verify_writes(disk, size="16M", rate_iops=1000), flowing=100)
    await pause_path(rig, "p0", True)
    await guest_shell(rig, "wait until guest I/O is stuck on the paused path",
                      wait_in_flight_command(disk))
    await suspend_times_out(rig, "mp", noflush=True, timeout=2)
    await pause_path(rig, "p0", False)
    await wait_io(rig, io)
