"""What a hung bench run leaves behind, read before anything is killed.

Three views of the same stuck requests: the backend process (its state and kernel stack,
per thread: blocked in io_getevents, in a futex, runnable?), the guest (the block layer's
debugfs: requests dispatched and still owned by the driver, ``inflight`` counts; blocked
tasks via sysrq-w), and the virtqueue between them (QEMU's view of the vring: avail
index vs used index is what the guest posted and the backend has not answered).
"""

from __future__ import annotations

import asyncio
import contextlib
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
            idx = {}
            for name in ("avail", "used"):  # struct vring_{avail,used}: u16 flags, u16 idx
                text = await guest.qmp.execute(
                    "human-monitor-command",
                    {"command-line": f"xp /1hx {ring[name + '-phys'] + 2:#x}"})
                idx[name] = int(str(text).rsplit(":", 1)[1].strip(), 16)
            out["avail_idx"], out["used_idx"] = idx["avail"], idx["used"]
            out["posted_not_returned"] = (idx["avail"] - idx["used"]) % 65536
    except Exception as e:
        out["error"] = f"{type(e).__name__}: {e}"
    return out


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
    return ev
