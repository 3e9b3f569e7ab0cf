"""dm on dm under a real guest (issue 13): multipath over two flakey mapped devices
(``dm:`` paths), one of them going down on a schedule; the path checker and the
multipath target ride it out. Sibling: both go down together with no queue_if_no_path."""

from __future__ import annotations

from guests.fio import FioHandle

from ..registry import scenario
from ..rig import Rig
from ..steps import add_device, start_io, wait_io
from ..workloads import verify_writes
from .common import MIB_SECTORS, mpath_over_dm


async def _mpath_over_flakey(rig: Rig, f0: str, f1: str, *,
                             queue_if_no_path: bool) -> FioHandle:
    """Flakey devices ``f0`` and ``f1`` (their up/down seconds) over the rig's image,
    a multipath over them as ``dm:`` paths, verified writes from the guest."""
    sectors = rig.image_mb * MIB_SECTORS
    await add_device(rig, "img", f"file:{rig.image}")
    disk = await mpath_over_dm(rig, {"f0": f"0 {sectors} flakey img 0 {f0}",
                                     "f1": f"0 {sectors} flakey img 0 {f1}"},
                               queue_if_no_path=queue_if_no_path)
    return await start_io(rig, verify_writes(disk, size="8M", rate_iops=1000))


@scenario("mpath-over-flakey", "stacking: multipath over two flakey dm: devices; f0 "
          "fails every I/O 1 s out of every 3, f1 stays up; the target fails f0 over "
          "to f1, the checker reinstates it when it is up again; no EIO, verify passes",
          family="mpath-over-flakey",
          evidence={"f0": {"targets.0.faults": 1},
                    "mp": {"targets.0.path-failures": 1, "targets.0.paths.pf0.ios": 1,
                           "targets.0.paths.pf1.ios": 100}})
async def mpath_over_flakey(rig: Rig) -> None:
    io = await _mpath_over_flakey(rig, "2 1", "3600 1", queue_if_no_path=True)
    await wait_io(rig, io)


@scenario("mpath-over-flakey-both-down-eio", "sibling: both flakey devices down 1 s "
          "out of every 3, at the same time, and no queue_if_no_path: the guest gets EIO",
          expect="eio", family="mpath-over-flakey",
          evidence={"f0": {"targets.0.faults": 1}, "f1": {"targets.0.faults": 1},
                    "mp": {"targets.0.path-failures": 2, "eio": 1}})
async def mpath_over_flakey_both_down(rig: Rig) -> None:
    io = await _mpath_over_flakey(rig, "2 1", "2 1", queue_if_no_path=False)
    await wait_io(rig, io)
