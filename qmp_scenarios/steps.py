"""Small async steps a scenario is built from. Each records itself on the rig's recorder
and waits on an event or a state with a timeout, never on a sleep. No asserts: a step
that cannot do its job raises; judging the guest's evidence is the runner's business.
The dm steps go through ``rig.dm`` (dm_backends.py): vudm, or for the kernel oracle the
guest kernel's own dm, so a scenario reads the same for both.
"""

from __future__ import annotations

import re
import signal
import statistics
import time
from pathlib import Path
from typing import Any

from backend.images import allocate_image
from guests.fio import FioHandle, start_fio
from guests.fio_job import FioJob
from guests.machine import Guest

from .nbd_server import NbdServer
from .result import FioEvidence
from .rig import Rig
from .workloads import (
    wait_flush_held_command,
    wait_for_ios_command,
    wait_in_flight_command,
    wait_io_or_flush_held_command,
)

# -- guest ----------------------------------------------------------------------------


async def boot_guest(rig: Rig, memory_mb: int = 512, vcpus: int = 1) -> Guest:
    """Boot the rig's guest; on a rig given a running guest, adopt that one."""
    if rig.guest is not None and not rig.owns_guest:
        async with rig.rec.step("boot guest (shared, already running)") as st:
            st.detail = "booted once for this test worker"
            if rig.guest.vcpus != vcpus:
                # a multiqueue scenario on a 1-vCPU guest would prove nothing
                raise RuntimeError(f"this scenario needs {vcpus} vCPU(s); the shared "
                                   f"guest has {rig.guest.vcpus}")
        return rig.guest
    async with rig.rec.step("boot guest") as st:
        guest = Guest(rig.workdir / "guest", memory_mb=memory_mb, vcpus=vcpus)
        rig.guest = guest
        await guest.start()
        st.detail = f"agent ready after {guest.boot_seconds or 0:.1f}s"
    if rig.oracle != "vudm":
        async with rig.rec.step(f"{rig.oracle} dm: paths and deferred devices"):
            await rig.dm.guest_booted(guest)
    return guest


async def attach_disk(rig: Rig, dm: str, disk_id: str, *, num_queues: int = 1,
                      reconnect: int | None = 1) -> str:
    """Export mapped device ``dm`` and hotplug it into the guest; return its /dev path.

    The guest's chardev reconnects (``reconnect=1``, QEMU retries every second), so a
    daemon killed and restarted gets the guest back with its requests in flight."""
    guest = rig.need_guest()
    if rig.oracle != "vudm":  # the mapped device lives in the guest itself
        async with rig.rec.step(f"use {dm} in the guest ({rig.oracle} dm)") as st:
            dev = await rig.dm.attach(dm, disk_id)
            st.detail = dev
        return dev
    async with rig.rec.step(f"hotplug {disk_id} ({dm})") as st:
        sock = rig.socket_path(f"{disk_id}.sock")
        mark = rig.events.mark()
        await rig.qmp("export-add", {"id": disk_id, "dm": dm, "socket": str(sock),
                                     "num-queues": num_queues, "writable": True})
        dev = await guest.hotplug_vhost_user_blk(disk_id, sock, num_queues=num_queues,
                                                 reconnect=reconnect)
        await rig.events.wait("EXPORT_CONNECTED", {"id": disk_id}, since=mark)
        st.detail = dev
    return dev


async def detach_disk(rig: Rig, disk_id: str) -> None:
    guest = rig.need_guest()
    async with rig.rec.step(f"unplug {disk_id}"):
        mark = rig.events.mark()
        await guest.unplug(disk_id)
        await rig.events.wait("EXPORT_DISCONNECTED", {"id": disk_id}, since=mark)
        await rig.qmp("export-del", {"id": disk_id})


async def start_io(rig: Rig, job: FioJob, *, flowing: int = 0) -> FioHandle:
    """Start fio in the guest (in the background) and return its handle; with
    ``flowing=N``, return only once the guest has completed N writes of it, so the steps
    that follow land in the middle of I/O."""
    guest = rig.need_guest()
    async with rig.rec.step(f"start fio {job.name} on {job.filename}"):
        handle = await start_fio(guest, job)
    rig.result.timings.setdefault("io_start", rig.rec.now())
    if flowing:
        await wait_guest_writes(rig, job.filename, flowing)
    return handle


async def wait_io(rig: Rig, handle: FioHandle, timeout: float = 300.0) -> FioEvidence:
    """Wait for fio to end; record its result as the guest's evidence."""
    async with rig.rec.step("wait for fio") as st:
        res = await handle.wait(timeout)
        verify = ("not-run" if not res.verified else "passed" if res.verify_ok else "failed")
        ev = FioEvidence(exit_code=res.exit_code, errors=res.errors, verify=verify,
                         read_ios=res.read.ios, write_ios=res.write.ios,
                         error_text=res.stderr[-1000:])
        rig.result.guest.fio = ev
        st.detail = f"exit {res.exit_code}, {res.errors} errors, verify {verify}"
    return ev


async def guest_writes(rig: Rig, disk: str) -> int:
    """Writes the guest's disk has completed so far (/sys/block/X/stat)."""
    name = disk.rsplit("/", 1)[-1]
    res = await rig.need_guest().run(f"cat /sys/block/{name}/stat", 30)
    return int(res.output.split()[4])


async def wait_guest_writes(rig: Rig, disk: str, more: int, timeout: float = 60.0) -> float:
    """Wait until the guest completed ``more`` writes beyond now; return the time it took.

    The guest waits on its own counters, so this is "I/O is flowing again", seen from the
    guest: a failover time is measured with it.
    """
    async with rig.rec.step(f"wait for {more} more guest writes on {disk}") as st:
        t0 = rig.rec.now()
        target = await guest_writes(rig, disk) + more
        res = await rig.need_guest().run(wait_for_ios_command(disk, target), timeout)
        if res.exit_code != 0:
            raise RuntimeError(f"waiting for guest writes failed: {res.stderr[-300:]}")
        took = rig.rec.now() - t0
        st.detail = f"{took:.2f}s"
    return took


async def wait_guest_in_flight(rig: Rig, disk: str, why: str, at_least: int = 1) -> None:
    """Wait until the guest has ``at_least`` I/Os in flight on ``disk`` that do not
    complete (held by the daemon: queued, parked, or stuck on a paused path)."""
    await guest_shell(rig, f"wait until {at_least}+ guest I/Os on {disk} are held ({why})",
                      wait_in_flight_command(disk, at_least))


async def wait_guest_io_or_flush_held(rig: Rig, disk: str, why: str) -> None:
    """Wait until the guest has a read or write held on ``disk`` or a flush held."""
    await guest_shell(rig, f"wait until a guest I/O or flush on {disk} is held ({why})",
                      wait_io_or_flush_held_command(disk))


async def wait_guest_flush_held(rig: Rig, why: str) -> None:
    """Wait until a guest task waits for a flush that does not complete."""
    await guest_shell(rig, f"wait until a guest flush is held ({why})",
                      wait_flush_held_command())


async def collect_guest_errors(rig: Rig) -> list[str]:
    """The guest kernel's own I/O error lines (dmesg). With the kernel oracle, the
    paths are guest disks too: their errors (a killed path's) are the dm's business,
    not the guest's, exactly as vudm's path errors never reach the guest; only the
    mapped device's own count."""
    guest = rig.need_guest()
    async with rig.rec.step("collect guest kernel I/O errors") as st:
        errors = await guest.kernel_io_errors()
        paths = rig.dm.path_disks()
        if paths:
            # ... and the rate limiter's notes ("blk_print_req_error: N callbacks
            # suppressed"), which name no device: the paths' errors are what it limits
            on_path = re.compile(r"\b(?:" + "|".join(map(re.escape, paths)) +
                                 r")\b|callbacks suppressed")
            left_out = sum(1 for e in errors if on_path.search(e))
            rig.result.guest.path_error_lines = left_out
            st.detail = f"{left_out} path lines left out, "
            errors = [e for e in errors if not on_path.search(e)]
        rig.result.guest.io_errors = errors
        st.detail += f"{len(errors)} lines"
    return errors


async def guest_shell(rig: Rig, what: str, command: str, timeout: float = 60.0) -> str:
    """Run a command in the guest (e.g. a flush with ``sync``/``blockdev --flushbufs``)."""
    guest = rig.need_guest()
    async with rig.rec.step(what) as st:
        res = await guest.run(command, timeout)
        st.detail = f"exit {res.exit_code}"
        if res.exit_code != 0:
            raise RuntimeError(f"{what}: exit {res.exit_code}: {res.stderr[-300:]}")
    return res.output


# -- paths ----------------------------------------------------------------------------


async def add_nbd_path(rig: Rig, name: str, image: Path | None = None, *,
                       network: bool = False, timeout: float | None = None,
                       direct: bool = True) -> NbdServer:
    """Start an NBD server for ``image`` (default: the rig's image) and register it with
    vudm as device ``name``. With ``network``, the server listens on TCP in a network
    namespace of its own (``nbd://``; the rig must have been made with ``network``), so
    the path can be partitioned; ``timeout`` is the device's per-request timeout.
    Several servers over one image must run with ``direct`` off: with O_DIRECT each
    server read-modify-writes a 4 KiB block on its own, and the halves of one block
    written through two servers lose one half."""
    async with rig.rec.step(f"add {'TCP ' if network else ''}NBD path {name}"):
        net = None
        if network:
            if rig.net is None:
                raise RuntimeError("a network path needs a scenario with network=True")
            net = await rig.net.add_path(name)
        srv = NbdServer(rig.run_dir / "paths", name, image or rig.image, net=net,
                        timeout=timeout, direct=direct)
        await srv.start()
        rig.paths[name] = srv
        await rig.dm.add_path(name, srv)
    return srv


def add_image(rig: Rig, name: str, size_mb: int) -> Path:
    """A fresh preallocated image ``name``.img in the rig's work dir (a path's own disk)."""
    path = rig.workdir / f"{name}.img"
    allocate_image(path, size_mb << 20)
    return path


async def add_dev(rig: Rig, name: str, uri: str) -> None:
    """Register device ``name`` (``dm:OTHER`` stacks a mapped device; for the kernel
    oracle, tables then name the guest's mapped device OTHER)."""
    async with rig.rec.step(f"add device {name} ({uri})"):
        await rig.dm.add_device(name, uri)


async def add_file_dev(rig: Rig, name: str, image: Path) -> None:
    await add_dev(rig, name, f"file:{image}")


async def kill_path(rig: Rig, name: str, *, wait_failed: str | None = None,
                    since: int | None = None, timeout: float = 30.0) -> None:
    """SIGKILL path ``name``'s NBD server; with ``wait_failed=DM`` also wait until vudm
    reports PATH_FAILED for it on that mapped device (after the event mark ``since``,
    default: now; a paused path may have been failed by the checker before the kill)."""
    async with rig.rec.step(f"kill path {name}"):
        mark = rig.dm.mark() if since is None else since
        killed_at = time.time()
        await rig.paths[name].kill()
        rig.result.timings.setdefault(f"kill_{name}", rig.rec.now())
        if wait_failed is not None:
            seen = await rig.dm.wait_path(wait_failed, name, failed=True, mark=mark,
                                          timeout=timeout)
            # the daemon's own timestamp of the event: detection latency, not our wait
            if seen is not None:
                rig.result.timings.setdefault(f"path_failed_{name}_after_kill",
                                              seen - killed_at)


async def kill_path_until_event(rig: Rig, name: str, dm: str, reason: str,
                                timeout: float = 60.0) -> None:
    """SIGKILL path ``name``'s server and wait for the table event ``reason`` on mapped
    device ``dm`` (e.g. a mirror leg or log failing when the next I/O meets it)."""
    async with rig.rec.step(f"kill path {name}, wait for '{reason}'"):
        mark = await rig.dm.event_mark(dm)
        await rig.paths[name].kill()
        rig.result.timings.setdefault(f"kill_{name}", rig.rec.now())
        await rig.dm.wait_event(dm, reason, mark, timeout)


async def pause_path(rig: Rig, name: str, paused: bool) -> None:
    """SIGSTOP (or SIGCONT) a path's server: its I/O hangs in flight instead of failing."""
    async with rig.rec.step(f"{'pause' if paused else 'continue'} path {name}"):
        rig.paths[name].daemon.pause(paused)


def _event_time(ev: dict[str, Any]) -> float:
    """The daemon's own timestamp of a QMP event (epoch seconds)."""
    stamp = ev.get("timestamp", {})
    return float(stamp.get("seconds", 0)) + float(stamp.get("microseconds", 0)) / 1e6


async def partition_path(rig: Rig, name: str, *, wait_failed: str | None = None,
                         within: float = 30.0) -> float | None:
    """Bring network path ``name``'s link down: its TCP connection hangs (nothing
    answers, nothing closes). With ``wait_failed=DM``, wait for PATH_FAILED on that
    mapped device and return the time from the link going down to the daemon's event;
    the step fails if that took longer than ``within`` seconds (the configured
    timeout)."""
    if rig.net is None:
        raise RuntimeError("partition_path needs a scenario with network=True")
    async with rig.rec.step(f"partition path {name}") as st:
        mark = rig.events.mark()
        await rig.net.set_link(name, up=False)
        down_at = time.time()
        if wait_failed is None:
            return None
        ev = await rig.events.wait("PATH_FAILED", {"name": wait_failed, "dev": name},
                                   since=mark, timeout=within + 30)
        took = _event_time(ev) - down_at
        st.detail = f"PATH_FAILED {took:.2f}s after the link went down"
        if took > within:
            raise RuntimeError(f"path {name} failed {took:.2f}s after the partition: "
                               f"later than the configured {within:g}s")
        return took


async def heal_path(rig: Rig, name: str, *, wait_reinstated: str | None = None,
                    timeout: float = 30.0) -> None:
    """Bring network path ``name``'s link back up; with ``wait_reinstated=DM`` wait
    until the path checker reinstates it on that mapped device."""
    if rig.net is None:
        raise RuntimeError("heal_path needs a scenario with network=True")
    async with rig.rec.step(f"heal path {name}"):
        mark = rig.events.mark()
        await rig.net.set_link(name, up=True)
        if wait_reinstated is not None:
            await rig.events.wait("PATH_REINSTATED", {"name": wait_reinstated, "dev": name},
                                  since=mark, timeout=timeout)


async def restore_path(rig: Rig, name: str, *, wait_reinstated: str | None = None,
                       timeout: float = 30.0) -> None:
    """Restart path ``name``'s NBD server; with ``wait_reinstated=DM`` wait until the
    path checker reinstates it on that mapped device."""
    async with rig.rec.step(f"restore path {name}"):
        mark = rig.dm.mark()
        await rig.paths[name].start()
        if wait_reinstated is not None:
            await rig.dm.wait_path(wait_reinstated, name, failed=False, mark=mark,
                                   timeout=timeout)


# -- mapped devices -------------------------------------------------------------------


async def add_device(rig: Rig, name: str, uri: str) -> None:
    """Register a device with vudm (``file:``, ``dm:OTHER`` to stack, ...); for the
    kernel oracle a ``file:`` device is a guest disk on that file."""
    async with rig.rec.step(f"add device {name} ({uri})"):
        await rig.dm.add_device(name, uri)


async def create_dm(rig: Rig, name: str, table: str) -> None:
    async with rig.rec.step(f"create {name}"):
        await rig.dm.create(name, table)


async def load_table(rig: Rig, name: str, table: str) -> None:
    async with rig.rec.step(f"load {name}"):
        await rig.dm.load(name, table)


async def suspend(rig: Rig, name: str, *, noflush: bool = False,
                  timeout: float | None = 30.0) -> None:
    kind = "noflush " if noflush else ""
    async with rig.rec.step(f"suspend {kind}{name}"):
        t0 = rig.rec.now()
        await rig.dm.suspend(name, noflush, timeout)
        rig.result.timings[f"suspend_{name}"] = rig.rec.now() - t0


async def suspend_times_out(rig: Rig, name: str, *, noflush: bool, timeout: float) -> None:
    """A suspend that must time out (I/O stuck in flight): the QMP error is the expected
    outcome, and the device must be ACTIVE again afterwards (the suspend was undone)."""
    kind = "noflush " if noflush else ""
    async with rig.rec.step(f"{kind}suspend {name} times out") as st:
        try:
            await rig.dm.suspend(name, noflush, timeout)
        except Exception as e:  # the QMP error is what this step waits for
            st.detail = str(e)[:200]
        else:
            raise RuntimeError("suspend returned although I/O was stuck in flight")
        state = await rig.dm.state(name)
        if state != "ACTIVE":
            raise RuntimeError(f"{name} is {state} after the timed-out suspend")


async def resume(rig: Rig, name: str) -> None:
    async with rig.rec.step(f"resume {name}"):
        await rig.dm.resume(name)


async def message(rig: Rig, name: str, text: str, sector: int = 0) -> str:
    async with rig.rec.step(f"message {name}: {text}") as st:
        reply = await rig.dm.message(name, sector, text)
        st.detail = reply
    return reply


async def dm_status(rig: Rig, name: str) -> dict[str, Any]:
    ret = await rig.qmp("query-dm", {"name": name})
    assert isinstance(ret, list) and ret
    info: dict[str, Any] = ret[0]
    return info


async def expect_status(rig: Rig, name: str, text: str) -> str:
    """The device's status line must contain ``text`` (e.g. a mirror leg's health)."""
    async with rig.rec.step(f"status of {name} shows {text.strip()!r}") as st:
        status = "\n".join((await rig.dm.lines(name)).status)
        st.detail = status
        if text not in status:
            raise RuntimeError(f"{name} status {status!r} lacks {text!r}")
    return status


async def wait_dm_event(rig: Rig, name: str, after_event_nr: int,
                        timeout: float = 30.0) -> int:
    """dm-wait: returns once the device's event number has risen past ``after_event_nr``."""
    async with rig.rec.step(f"wait for a table event on {name}") as st:
        ret = await rig.qmp("dm-wait", {"name": name, "event-nr": after_event_nr,
                                        "timeout": timeout})
        nr = int(ret["event-nr"])
        st.detail = f"event-nr {nr}"
    return nr


# -- the daemon itself ----------------------------------------------------------------


async def kill_daemon(rig: Rig, sig: signal.Signals = signal.SIGKILL) -> float:
    """Kill the vudm daemon with ``sig``; returns the scenario time of the kill."""
    async with rig.rec.step(f"kill vudm ({sig.name})") as st:
        code = await rig.kill_daemon(sig)
        st.detail = f"exit status {code}"
    return rig.rec.now()


async def sigterm_and_ask(rig: Rig) -> str:
    """SIGTERM the daemon (it drains: nothing new popped, in-flight I/O completes) and
    send ``quit`` while it drains; returns what the daemon says it waits for."""
    async with rig.rec.step("SIGTERM vudm; quit while it drains") as st:
        rig.signal_daemon(signal.SIGTERM)
        for _ in range(2):  # a quit that beats the signal starts the drain itself
            try:
                await rig.qmp("quit")
            except Exception as e:  # the answer we want is this refusal
                st.detail = str(e)[:300]
                break
        if "waiting for" not in st.detail:
            raise RuntimeError(f"quit while draining said: {st.detail!r}")
    return st.detail


async def restart_daemon(rig: Rig, *, keep_state: bool = True) -> float:
    """Start vudm again on the same QMP socket (same state directory unless
    ``keep_state=False``); the restart time goes into ``timings`` as
    ``daemon_restart_N`` (spawn to negotiated QMP)."""
    what = "same state dir" if keep_state else "without its state"
    async with rig.rec.step(f"restart vudm ({what})") as st:
        took = await rig.restart_daemon(keep_state=keep_state)
        n = sum(1 for k in rig.result.timings if k.startswith("daemon_restart_")) + 1
        rig.result.timings[f"daemon_restart_{n}"] = took
        st.detail = f"{took:.2f}s to QMP"
    return took


async def wait_guest_writes_since(rig: Rig, disk: str, writes: int, since: float,
                                  timeout: float = 60.0) -> float:
    """Wait until the guest's write count exceeds ``writes``; return the seconds from
    scenario time ``since`` (e.g. a kill) to then."""
    async with rig.rec.step(f"wait for guest writes on {disk} beyond {writes}") as st:
        res = await rig.need_guest().run(wait_for_ios_command(disk, writes + 1), timeout)
        if res.exit_code != 0:
            raise RuntimeError(f"waiting for guest writes failed: {res.stderr[-300:]}")
        took = rig.rec.now() - since
        st.detail = f"{took:.2f}s"
    return took


def record_distribution(rig: Rig, prefix: str, values: list[float]) -> None:
    """``PREFIX_p50``, ``_p99``, ``_max`` (and ``_n``) of ``values`` into timings."""
    if not values:
        return
    ordered = sorted(values)
    rig.result.timings[f"{prefix}_p50"] = statistics.median(ordered)
    # nearest rank: with 20 values, p99 is the largest
    rank = max(0, min(len(ordered) - 1, -(-99 * len(ordered) // 100) - 1))
    rig.result.timings[f"{prefix}_p99"] = ordered[rank]
    rig.result.timings[f"{prefix}_max"] = ordered[-1]
    rig.result.timings[f"{prefix}_n"] = float(len(ordered))
