"""The daemon itself dies: SIGKILL of ``vudm serve`` under a real guest doing verified
writes, and a restart on the same state directory and sockets. The guest's chardev
reconnects (``reconnect=1``), libvhost-user's inflight region hands the new daemon the
requests that were in flight, and nothing reaches the guest as an error.

The EIO sibling restarts the daemon *without* its state and re-creates the export over
an ``error`` table: the same checks then see the EIO, so they can.
"""

from __future__ import annotations

import asyncio
import itertools
import signal
from typing import Any

from ..registry import scenario
from ..result import FioEvidence
from ..rig import Rig
from ..steps import (
    add_nbd_path,
    guest_shell,
    guest_writes,
    kill_daemon,
    kill_path,
    load_table,
    pause_path,
    record_distribution,
    restart_daemon,
    restore_path,
    resume,
    sigterm_and_ask,
    start_io,
    suspend,
    wait_guest_writes_since,
    wait_io,
)
from ..workloads import verify_writes, wait_in_flight_command
from .common import MIB_SECTORS, mpath_disk, mpath_table

FAMILY = "daemon-restart"
KILLS = 20
"""daemon-kill-loop's number of SIGKILL + restart rounds."""


def _wait_in_flight_writes_command(disk: str) -> str:
    """A guest command returning once the disk has writes in flight (not only reads:
    fio's verify_backlog reads too)."""
    name = disk.rsplit("/", 1)[-1]
    return (f"while [ $(awk '{{print $2}}' /sys/block/{name}/inflight) -eq 0 ]; "
            f"do usleep 20000; done")


def _merge(total: FioEvidence | None, ev: FioEvidence) -> FioEvidence:
    """One verdict over several fio runs: any error or failed verify shows."""
    if total is None:
        return ev
    verify = ("failed" if "failed" in (total.verify, ev.verify)
              else "passed" if "passed" in (total.verify, ev.verify) else "not-run")
    return FioEvidence(exit_code=total.exit_code or ev.exit_code,
                       errors=total.errors + ev.errors, verify=verify,
                       read_ios=total.read_ios + ev.read_ios,
                       write_ios=total.write_ios + ev.write_ios,
                       error_text=total.error_text or ev.error_text)


async def _export(rig: Rig, export_id: str) -> dict[str, Any]:
    exports = await rig.qmp("query-exports")
    return next(e for e in exports if e["id"] == export_id)


async def _path_failed(rig: Rig, name: str, path: str) -> bool:
    """Whether ``path`` is marked F in the multipath status line of ``name``."""
    info = await rig.qmp("query-dm", {"name": name})
    words = str(info[0]["status"]).split()
    return any(w == path and nxt == "F" for w, nxt in itertools.pairwise(words))


async def _dm_state(rig: Rig, name: str) -> str:
    info = await rig.qmp("query-dm", {"name": name})
    return str(info[0]["state"])


@scenario("daemon-kill-loop", f"restart: multipath over two NBD paths, vudm SIGKILLed and "
          f"restarted {KILLS} times under verified writes at QD16: no guest error, every "
          "restart's kill-to-first-completed-write time in timings",
          family=FAMILY, evidence={"export:d0": {"resubmitted": 1},
                                   "mp": {"targets.0.paths.p0.ios": 1,
                                          "targets.0.paths.p1.ios": 1}})
async def daemon_kill_loop(rig: Rig) -> None:
    disk = await mpath_disk(rig, ["p0", "p1"])
    times: list[float] = []
    total: FioEvidence | None = None
    for _ in range(KILLS):
        # One short verified run per kill, unthrottled so that 16 writes are in flight
        # when the kill lands (64 writes in); every run's blocks are verified after the
        # restart, by fio reading them back.
        io = await start_io(rig, verify_writes(disk, size="4M", rate_iops=1_000_000,
                                               iodepth=16), flowing=64)
        killed_at = await kill_daemon(rig)
        before = await guest_writes(rig, disk)  # nothing completes while vudm is dead
        await restart_daemon(rig)
        times.append(await wait_guest_writes_since(rig, disk, before, killed_at))
        total = _merge(total, await wait_io(rig, io))
    for i, t in enumerate(times, 1):
        rig.result.timings[f"kill_to_first_write_{i:02d}"] = t
    record_distribution(rig, "kill_to_first_write", times)
    # And once the polite way (an upgrade): SIGTERM drains what is in flight, exits 0.
    io = await start_io(rig, verify_writes(disk, size="4M", rate_iops=1_000_000,
                                           iodepth=16), flowing=64)
    stopped_at = rig.rec.now()
    async with rig.rec.step("SIGTERM vudm: it drains and exits 0") as st:
        code = await rig.kill_daemon(signal.SIGTERM)
        st.detail = f"exit status {code}"
        if code != 0:
            raise RuntimeError(f"vudm exited with {code} after SIGTERM")
    before = await guest_writes(rig, disk)
    await restart_daemon(rig)
    rig.result.timings["sigterm_to_first_write"] = await wait_guest_writes_since(
        rig, disk, before, stopped_at)
    rig.result.guest.fio = _merge(total, await wait_io(rig, io))


@scenario("daemon-kill-stateless-eio", "restart sibling: vudm SIGKILLed under verified "
          "writes and restarted without its state; the export re-created over an error "
          "table: the guest sees the EIO", expect="eio", family=FAMILY,
          evidence={"mp": {"eio": 1}})
async def daemon_kill_stateless_eio(rig: Rig) -> None:
    disk = await mpath_disk(rig, ["p0", "p1"])
    io = await start_io(rig, verify_writes(disk, size="4M", rate_iops=500, iodepth=16),
                        flowing=32)
    await kill_daemon(rig)
    await restart_daemon(rig, keep_state=False)
    async with rig.rec.step("re-create mp over an error table and export d0 again"):
        if await rig.qmp("query-dm"):
            raise RuntimeError("a daemon without its state still knows mapped devices")
        sectors = rig.image_mb * MIB_SECTORS
        await rig.qmp("dm-create", {"name": "mp", "table": f"0 {sectors} error"})
        await rig.qmp("export-add", {"id": "d0", "dm": "mp",
                                     "socket": str(rig.socket_path("d0.sock")),
                                     "writable": True})
    await wait_io(rig, io)


@scenario("daemon-kill-parked", "restart: both paths dead with queue_if_no_path, writes "
          "queued, noflush suspend pushes them back, vudm SIGKILLed; the restarted daemon "
          "has the device SUSPENDED and the resubmitted writes on its deferred list; load "
          "a fresh path, resume: every parked write completes", family=FAMILY,
          evidence={"export:d0": {"resubmitted": 1},
                    "mp": {"pushed-back": 1, "deferred-reissued": 1}})
async def daemon_kill_parked(rig: Rig) -> None:
    disk = await mpath_disk(rig, ["p0", "p1"])
    # Verified at the end only, so what queues when the paths die are writes.
    io = await start_io(rig, verify_writes(disk, size="16M", rate_iops=1000, backlog=None),
                        flowing=100)
    for p in ("p0", "p1"):
        await kill_path(rig, p, wait_failed="mp")
    await guest_shell(rig, "wait until guest writes are queued in vudm",
                      _wait_in_flight_writes_command(disk))
    await suspend(rig, "mp", noflush=True)
    parked = int((await guest_shell(rig, "count the guest's parked writes",
                                    f"cat /sys/block/{disk.rsplit('/', 1)[-1]}/inflight"))
                 .split()[1])
    if parked < 1:
        raise RuntimeError("no guest write is parked")
    # SIGTERM cannot finish this drain (the writes are parked until a resume): the daemon
    # says so, and then dies for real.
    said = await sigterm_and_ask(rig)
    if "export 'd0'" not in said or "SUSPENDED" not in said:
        raise RuntimeError(f"the drain does not say it waits for d0's parked I/O: {said}")
    await kill_daemon(rig)
    mark = rig.events.mark()
    await restart_daemon(rig)
    async with rig.rec.step("the guest's requests come back, parked") as st:
        # The guest may reconnect before the rig's client does (its event is then
        # missed): the counter tells either way.
        resubmitted = (await _export(rig, "d0"))["resubmitted"]
        if not resubmitted:
            ev = await rig.events.wait("EXPORT_RESUBMITTED", {"id": "d0"}, since=mark,
                                       timeout=60)
            resubmitted = ev["data"]["count"]
        state = await _dm_state(rig, "mp")
        if state != "SUSPENDED":
            raise RuntimeError(f"mp is {state} after the restart, not SUSPENDED")
        done_before = await guest_writes(rig, disk)
        st.detail = (f"{resubmitted} requests resubmitted onto mp's deferred list "
                     f"({parked} of them the guest's writes); mp SUSPENDED")
    async with rig.rec.step("parked writes stay parked while suspended") as st:
        # a round trip through the daemon and the guest: had the resubmitted writes
        # reached a target, they would have failed the dead paths or completed
        await rig.qmp("query-version")
        still = await guest_writes(rig, disk)
        if still != done_before:
            raise RuntimeError(f"{still - done_before} writes completed while suspended")
        st.detail = f"{still} guest writes done, none since the restart"
    await add_nbd_path(rig, "p2")
    await load_table(rig, "mp", mpath_table(0, rig.image_mb * MIB_SECTORS, ["p2"]))
    await resume(rig, "mp")
    # fio's queue is full of the parked writes: no new write can complete before the
    # parked ones do, so the count reaching done + parked means they completed.
    took = await wait_guest_writes_since(rig, disk, done_before + parked - 1,
                                         rig.rec.now())
    rig.result.timings["resume_to_parked_writes_done"] = took
    await wait_io(rig, io)


@scenario("daemon-kill-during-suspend", "restart: vudm SIGKILLed while a flush suspend "
          "waits for I/O stuck on a paused path, whose server then dies too; after the "
          "restart the device is ACTIVE (the suspend was never acknowledged), the path "
          "failed, and once the checker reinstates it the guest has seen no error",
          family=FAMILY, evidence={"export:d0": {"resubmitted": 1},
                                   "mp": {"targets.0.path-failures": 1}})
async def daemon_kill_during_suspend(rig: Rig) -> None:
    disk = await mpath_disk(rig, ["p0"])
    io = await start_io(rig, verify_writes(disk, size="8M", rate_iops=1000), flowing=100)
    await pause_path(rig, "p0", True)
    await guest_shell(rig, "wait until guest I/O is stuck on the paused path",
                      wait_in_flight_command(disk))
    async with rig.rec.step("flush suspend of mp waits for the stuck I/O") as st:
        suspending = asyncio.ensure_future(rig.qmp("dm-suspend", {"name": "mp"}))
        # Commands run in the order they arrive and the suspend does not yield before it
        # waits for in-flight I/O: once this reply is in, the suspend is waiting.
        await rig.qmp("query-version")
        if suspending.done():
            raise RuntimeError(f"the suspend ended with I/O stuck: {suspending.result()}")
        st.detail = "dm-suspend sent, not acknowledged"
    await kill_daemon(rig)
    async with rig.rec.step("the unacknowledged suspend died with the daemon") as st:
        try:
            await suspending
        except Exception as e:  # the connection went away: that is the point
            st.detail = f"{type(e).__name__}"
        else:
            raise RuntimeError("dm-suspend was acknowledged before the kill")
    # The path's server dies too: the new daemon must come up anyway, with p0 failed.
    await kill_path(rig, "p0")
    await restart_daemon(rig)
    async with rig.rec.step("mp is ACTIVE: the last acknowledged command was create") as st:
        state = await _dm_state(rig, "mp")
        if state != "ACTIVE":
            raise RuntimeError(f"mp is {state} after the restart")
        st.detail = state
    async with rig.rec.step("p0 came back as a failed path, not a start-up error") as st:
        mark = rig.events.mark()
        if not await _path_failed(rig, "mp", "p0"):
            # not failed yet: its first I/O or the checker's first probe fails it
            await rig.events.wait("PATH_FAILED", {"name": "mp", "dev": "p0"}, since=mark)
        st.detail = "p0 F"
    await restore_path(rig, "p0", wait_reinstated="mp")
    await wait_io(rig, io)
