"""Paths that die the way networks die (issue 13): NBD over TCP, each server in a network
namespace of its own; a path dies by its link going down, so its connection hangs
instead of closing. The NBD device's per-request timeout and the path checker must end
the requests stuck on it, so that multipath retries them on the other path."""

from __future__ import annotations

from ..registry import scenario
from ..rig import Rig
from ..steps import (
    heal_path,
    kill_path,
    partition_path,
    restore_path,
    start_io,
    wait_guest_writes,
    wait_io,
)
from ..workloads import verify_writes
from .common import mpath_disk

WRITES = "64M"
"""The verified writes' size: at 1000 IOPS about 16 s of writes (fio catches up on its
rate after each stall, so the stalls do not lengthen it), well past the last failover's
"100 more writes" (about 8 s after the I/O starts when the guest runs at full rate).
16M ran out there on an idle machine: the wait then timed out with fio done writing."""

NBD_TIMEOUT = 5.0
"""The paths' per-request timeout (``nbd://...?timeout=5``): a partitioned path must be
failed within it (the checker, probing every 0.5 s with a 2 s timeout, is usually
first)."""


async def _failover(rig: Rig, disk: str, key: str, since: float) -> None:
    """Wait for 100 more guest writes; record the time from ``since`` (the link going
    down, the server's kill) to then: the failover time the guest sees."""
    await wait_guest_writes(rig, disk, 100)
    rig.result.timings[key] = rig.rec.now() - since


@scenario("path-partition", "multipath over two nbd:// paths in network namespaces; "
          "each path partitioned in turn under verified writes (link down: the "
          "connection hangs) fails over within the NBD timeout and is reinstated once "
          "its link is back; then each path's server killed, for comparison",
          network=True,
          family="path-partition",
          evidence={"mp": {"targets.0.path-failures": 4, "targets.0.paths.p0.ios": 100,
                           "targets.0.paths.p1.ios": 100}})
async def path_partition(rig: Rig) -> None:
    disk = await mpath_disk(rig, ["p0", "p1"], network=True, timeout=NBD_TIMEOUT)
    io = await start_io(rig, verify_writes(disk, size=WRITES, rate_iops=1000), flowing=100)
    for p in ("p0", "p1"):
        down = rig.rec.now()
        failed = await partition_path(rig, p, wait_failed="mp", within=NBD_TIMEOUT)
        if failed is not None:
            rig.result.timings[f"path_failed_{p}_after_partition"] = failed
        await _failover(rig, disk, f"failover_100_writes_after_partition_{p}", down)
        await heal_path(rig, p, wait_reinstated="mp")
        await wait_guest_writes(rig, disk, 100)
    for p in ("p0", "p1"):
        killed = rig.rec.now()
        await kill_path(rig, p, wait_failed="mp")
        await _failover(rig, disk, f"failover_100_writes_after_kill_{p}", killed)
        await restore_path(rig, p, wait_reinstated="mp")
        await wait_guest_writes(rig, disk, 100)
    await wait_io(rig, io)


@scenario("path-partition-no-queue-eio", "sibling: the same paths without "
          "queue_if_no_path, both partitioned under verified writes: the stuck requests "
          "time out and the guest gets EIO instead of hanging", expect="eio", network=True,
          family="path-partition", evidence={"mp": {"targets.0.path-failures": 2, "eio": 1}})
async def path_partition_no_queue(rig: Rig) -> None:
    disk = await mpath_disk(rig, ["p0", "p1"], network=True, timeout=NBD_TIMEOUT,
                            queue_if_no_path=False)
    io = await start_io(rig, verify_writes(disk, size=WRITES, rate_iops=1000), flowing=100)
    await partition_path(rig, "p0", wait_failed="mp", within=NBD_TIMEOUT)
    await wait_guest_writes(rig, disk, 100)
    await partition_path(rig, "p1", wait_failed="mp", within=NBD_TIMEOUT)
    await wait_io(rig, io)
