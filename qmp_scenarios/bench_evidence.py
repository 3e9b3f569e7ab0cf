"""What a hung bench run leaves behind, read before anything is killed.

Three views of the same stuck requests: the backend process (its state and kernel stack,
per thread: blocked in io_getevents, in a futex, runnable?), the guest (the block layer's
debugfs: requests dispatched and still owned by the driver, ``inflight`` counts; blocked
tasks via sysrq-w), and the virtqueue between them (QEMU's view of the vring: avail
index vs used index is what the guest posted and the backend has not answered).

Then one question is put to the stuck pair: the eventfds the backend and the guest's
QEMU share (the vring's kick, call and error fds) are signalled from outside, one at a
time, and the guest's in-flight count read after each. When every posted request was
answered (``avail_idx == used_idx``) and signalling one of them lets the guest's
requests finish, the backend had done its part and the guest was never told: the
used-ring notification was lost between the backend's ``vu_queue_notify`` and the
guest's interrupt. That is how every qemu-storage-daemon hang seen here ended, until
TCG guests got room for a second CPU (``guests.qemu_cmd.smp_option`` says why).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
from pathlib import Path
from typing import Any

from guests.machine import Guest

from .bench_backends import Backend

GUEST_BRINGUP = (
    # a task blocked for 10 s is reported with its stack in dmesg; sysrq-w on demand
    "echo 10 > /proc/sys/kernel/hung_task_timeout_secs 2>/dev/null;"
    " echo 1 > /proc/sys/kernel/sysrq 2>/dev/null;"
    " mountpoint -q /sys/kernel/debug || mount -t debugfs debugfs /sys/kernel/debug; true"
)


def process_state(pid: int | None) -> dict[str, Any]:
    """State and kernel stack of every thread of ``pid`` (needs root for the stacks)."""
    if pid is None:
        return {"error": "not running"}
    out: dict[str, Any] = {"pid": pid}
    base = Path(f"/proc/{pid}")
    try:
        status = (base / "status").read_text()
        out["state"] = next((ln.split(":", 1)[1].strip() for ln in status.splitlines()
                             if ln.startswith("State:")), "?")
        threads = {}
        for task in sorted((base / "task").iterdir(), key=lambda p: int(p.name)):
            t: dict[str, str] = {}
            for name in ("comm", "wchan", "stack"):
                try:
                    t[name] = (task / name).read_text().strip()
                except OSError as e:
                    t[name] = f"<{e.strerror}>"
            stat = (task / "stat").read_text().rsplit(")", 1)[1].split()
            t["state"] = stat[0]
            threads[task.name] = t
        out["threads"] = threads
    except OSError as e:
        out["error"] = f"{type(e).__name__}: {e}"
    return out


def guest_block_script(disk: str) -> str:
    name = disk.rsplit("/", 1)[-1]
    d = f"/sys/kernel/debug/block/{name}"
    return (
        f"echo '== /sys/block/{name}/inflight'; cat /sys/block/{name}/inflight;"
        " echo '== /proc/interrupts (virtio)'; grep -i virtio /proc/interrupts;"
        f" for f in {d}/hctx*/dispatch {d}/hctx*/busy {d}/hctx*/tags {d}/hctx*/state"
        f" {d}/state; do echo \"== $f\"; cat \"$f\" 2>&1; done;"
        " echo w > /proc/sysrq-trigger 2>/dev/null;"
        " echo '== dmesg (tail)'; dmesg | tail -n 80"
    )


async def virtqueue_state(guest: Guest, disk_id: str) -> Any:
    """The disk's vring as QEMU sees it (x-query-virtio-vhost-queue-status, QEMU >= 7.2)
    and its two indexes read from guest memory: ``avail_idx - used_idx`` requests were
    posted by the guest and not yet returned by the backend."""
    path = f"/machine/peripheral/{disk_id}/virtio-backend"
    out: dict[str, Any] = {}
    try:
        async with asyncio.timeout(10.0):
            ring = await guest.qmp.execute("x-query-virtio-vhost-queue-status",
                                           {"path": path, "queue": 0})
            out["ring"] = ring
            assert isinstance(ring, dict)
            num = int(ring["num"])

            async def u16s(phys: int, n: int) -> list[int]:
                text = await guest.qmp.execute("human-monitor-command",
                                               {"command-line": f"xp /{n}hx {phys:#x}"})
                return [int(w, 16) for w in str(text).split(":", 1)[1].split()]

            # struct vring_avail: flags, idx, ring[num], used_event;
            # struct vring_used: flags, idx, ring[num] (8 bytes each), avail_event
            avail, used = ring["avail-phys"], ring["used-phys"]
            out["avail_flags"], out["avail_idx"] = await u16s(avail, 2)
            out["used_flags"], out["used_idx"] = await u16s(used, 2)
            (out["used_event"],) = await u16s(avail + 4 + 2 * num, 1)
            (out["avail_event"],) = await u16s(used + 4 + 8 * num, 1)
            out["posted_not_returned"] = (out["avail_idx"] - out["used_idx"]) % 65536
            # EVENT_IDX: the guest asked to be interrupted once used_idx passed
            # used_event; if it has, a notification was due after the guest wrote it.
            out["notification_due"] = 0 < (out["used_idx"] - out["used_event"]) % 65536 < 32768
    except Exception as e:
        out["error"] = f"{type(e).__name__}: {e}"
    return out


def _eventfds(pid: int) -> dict[int, tuple[int, int]]:
    """``pid``'s eventfds: eventfd-id (the same in every process holding it) -> (its fd
    there, its count)."""
    found = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            info = dict(ln.split(":", 1) for ln in
                        Path(f"/proc/{pid}/fdinfo/{fd}").read_text().splitlines() if ":" in ln)
        except OSError:
            continue
        if "eventfd-id" in info:
            found[int(info["eventfd-id"])] = (int(fd), int(info["eventfd-count"].strip(), 16))
    return found


def shared_eventfds(backend_pid: int | None, qemu_pid: int) -> dict[str, Any]:
    """The eventfds the backend and the guest's QEMU both hold, with their counts: an
    unread count on one is a signal its reader never took."""
    if backend_pid is None:
        return {"error": "backend not running"}
    try:
        mine, theirs = _eventfds(backend_pid), _eventfds(qemu_pid)
    except OSError as e:
        return {"error": f"{type(e).__name__}: {e}"}
    shared = set(mine) & set(theirs)
    out: dict[str, Any] = {
        str(i): {"backend_fd": mine[i][0], "qemu_fd": theirs[i][0], "count": mine[i][1]}
        for i in sorted(shared)}
    # A signal left on an eventfd only QEMU holds any more (a vring's masked notifier,
    # say, after the call fd was switched back) is one nobody will read.
    out["qemu_only_unread"] = {str(i): {"qemu_fd": fd, "count": n}
                               for i, (fd, n) in sorted(theirs.items())
                               if i not in shared and n}
    return out


_libc = ctypes.CDLL(None, use_errno=True)
_SYS_PIDFD_GETFD = 438  # the same on x86_64 and aarch64; Python has no wrapper for it


def signal_eventfd(pid: int, fd: int) -> None:
    """Add 1 to the eventfd that is ``fd`` in process ``pid`` (pidfd_getfd: the same
    eventfd, not a reopening)."""
    pidfd = os.pidfd_open(pid)
    try:
        mine = _libc.syscall(_SYS_PIDFD_GETFD, pidfd, fd, 0)
        if mine < 0:
            raise OSError(ctypes.get_errno(), f"pidfd_getfd({pid}, {fd})")
    finally:
        os.close(pidfd)
    try:
        os.eventfd_write(mine, 1)
    finally:
        os.close(mine)


async def _inflight(guest: Guest, disk: str) -> int:
    name = disk.rsplit("/", 1)[-1]
    res = await guest.run(f"cat /sys/block/{name}/inflight", timeout=10.0)
    return sum(int(n) for n in res.output.split())


async def _inflight_below(guest: Guest, disk: str, below: int, within: float) -> int:
    """The guest's in-flight count, read until it is under ``below`` or ``within``
    seconds have passed (a guest under TCG answers an interrupt in milliseconds)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        now = await _inflight(guest, disk)
        if now < below or loop.time() >= deadline:
            return now


async def release_probe(guest: Guest, backend: Backend, disk: str,
                        shared: dict[str, Any]) -> dict[str, Any]:
    """Signal each shared eventfd in turn; report the guest's in-flight count after each
    and which one (if any) let its requests finish."""
    out: dict[str, Any] = {"steps": []}
    try:
        before = await _inflight(guest, disk)
        out["inflight_before"] = before
        for ident, fds in shared.items():
            if not ident.isdigit() or not isinstance(fds, dict) or backend.pid is None:
                continue
            signal_eventfd(backend.pid, fds["backend_fd"])
            after = await _inflight_below(guest, disk, before, within=1.0)
            out["steps"].append({"eventfd_id": int(ident), "inflight_after": after})
            if after < before:
                out["released_by"] = int(ident)
                break
    except Exception as e:
        out["error"] = f"{type(e).__name__}: {e}"
    return out


def verdict(ev: dict[str, Any]) -> str:
    """One line on where the requests stopped, from the evidence above."""
    vq, probe = ev.get("virtqueue", {}), ev.get("release_probe", {})
    if not isinstance(vq, dict) or "posted_not_returned" not in vq:
        return "unknown: the vring could not be read"
    if vq["posted_not_returned"]:
        return f"backend: {vq['posted_not_returned']} requests posted and not answered"
    if "released_by" in probe:
        return ("notification lost: every posted request was answered, and signalling "
                f"eventfd {probe['released_by']} (shared by backend and QEMU) let the "
                "guest finish them")
    return "guest: every posted request was answered and no signal released the guest"


async def collect(guest: Guest, backend: Backend, disk_id: str, disk: str) -> dict[str, Any]:
    """Everything above, each part bounded so one wedged party cannot stop the rest."""
    ev: dict[str, Any] = {"backend_process": process_state(backend.pid)}
    ev["virtqueue"] = await virtqueue_state(guest, disk_id)
    try:
        ev["backend_monitor"] = await asyncio.wait_for(backend.inspect(), 10.0)
    except Exception as e:
        ev["backend_monitor"] = f"{type(e).__name__}: {e}"
    try:
        res = await guest.run(guest_block_script(disk), timeout=30.0)
        ev["guest"] = res.output[-20000:]
    except Exception as e:
        ev["guest"] = f"{type(e).__name__}: {e}"
    # the stack again: a backend that was only slow has moved on, a stuck one has not
    with contextlib.suppress(Exception):
        ev["backend_process_again"] = process_state(backend.pid)
    ev["shared_eventfds"] = shared_eventfds(backend.pid, guest.pid)
    ev["release_probe"] = await release_probe(guest, backend, disk, ev["shared_eventfds"])
    ev["verdict"] = verdict(ev)
    return ev
