"""The fio jobs scenarios run in the guest, and reading their I/O-per-second log."""

from __future__ import annotations

from guests.fio_job import FioJob
from guests.machine import Guest

IOPS_LOG = "/tmp/vudm-io"
"""fio writes ``<prefix>_iops.log`` (per_job_logs=0): one line per interval."""


def verify_writes(disk: str, *, size: str = "32M", rate_iops: int | None = 1000,
                  iodepth: int = 8, bs: str = "4k", name: str = "verify",
                  fsync_every: int = 0, backlog: int | None = 128,
                  offset: str | None = None) -> FioJob:
    """Random writes at a steady rate with every block read back and checked.

    The rate keeps I/O flowing for ``size / bs / rate_iops`` seconds, so a scenario's
    steps (kill a path, suspend, reload) happen while writes are in flight; blocks are
    verified during the run (``verify_backlog``) and all of them again at the end.
    ``fsync_every`` N > 0 sends a flush (fsync of the device) after every N writes.
    ``backlog=None`` verifies only at the end: until then every request is a write.
    ``offset``: where the written region starts (default: the device's start).
    ``rate_iops=None``: as fast as fio can. A rate-limited fio waits for every I/O in
    flight before it sleeps (io_u_quiesce), so one held write stops all the others.
    """
    flush: tuple[tuple[str, str], ...] = (("fsync", str(fsync_every)),) if fsync_every else ()
    if rate_iops is not None:
        flush += (("rate_iops", str(rate_iops)),)
    if offset is not None:
        flush += (("offset", offset),)
    return FioJob(
        filename=disk, rw="randwrite", bs=bs, iodepth=iodepth, size=size, verify=True,
        verify_backlog=backlog, name=name,
        extra=(("write_iops_log", IOPS_LOG),
               ("log_avg_msec", "500"), ("per_job_logs", "0"), *flush),
    )


async def read_iops_log(guest: Guest, io_start: float) -> list[tuple[float, float, float]]:
    """(seconds since scenario start, read IOPS, write IOPS) from the guest's fio log."""
    res = await guest.run(f"cat {IOPS_LOG}_iops.log 2>/dev/null; true", 30)
    buckets: dict[float, list[float]] = {}
    for line in res.output.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < 3 or not parts[0].isdigit():
            continue
        t = io_start + int(parts[0]) / 1000.0
        rw = int(parts[2])
        b = buckets.setdefault(t, [0.0, 0.0])
        if rw in (0, 1):
            b[rw] += float(parts[1])
    return [(t, v[0], v[1]) for t, v in sorted(buckets.items())]


def wait_for_ios_command(disk: str, writes: int) -> str:
    """A guest command returning once the disk has completed ``writes`` writes.

    The waiting happens in the guest on the disk's own counters (/sys/block/X/stat),
    so the host step that follows (kill, suspend) really lands in the middle of I/O.
    """
    name = disk.rsplit("/", 1)[-1]
    return (f"while [ $(awk '{{print $5}}' /sys/block/{name}/stat) -lt {writes} ]; "
            f"do sleep 0.02; done")


def wait_for_sectors_written_command(disk: str, sectors: int) -> str:
    """A guest command returning once the disk has completed writes of ``sectors``
    sectors (merged or not: the block layer may merge adjacent writes, so a request
    count would not be exact)."""
    name = disk.rsplit("/", 1)[-1]
    return (f"while [ $(awk '{{print $7}}' /sys/block/{name}/stat) -lt {sectors} ]; "
            f"do sleep 0.02; done")


def nomerges_command(disk: str) -> str:
    """A guest command that turns off request merging on ``disk`` (nomerges=2), so each
    write fio issues reaches the device as one request of its own."""
    name = disk.rsplit("/", 1)[-1]
    return f"echo 2 > /sys/block/{name}/queue/nomerges"


_MOUNT_DEBUGFS = ("[ -d /sys/kernel/debug/block ] || "
                  "mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null; ")
_FLUSH_WAITED_FOR = "grep -qs submit_bio_wait /proc/[0-9]*/wchan"
"""A guest task waits for a flush (fsync of a block device ends in submit_bio_wait)."""


def _held(disk: str) -> str:
    """Shell arithmetic: the reads and writes ``disk`` holds (see wait_in_flight_command)."""
    name = disk.rsplit("/", 1)[-1]
    return (f"$(( $(awk '{{print $1 + $2}}' /sys/block/{name}/inflight) "
            f"+ $(cat /sys/kernel/debug/block/{name}/requeue_list 2>/dev/null | wc -l) ))")


def wait_in_flight_command(disk: str, at_least: int = 1) -> str:
    """A guest command returning once the disk holds ``at_least`` I/Os (reads or writes:
    with verify_backlog fio also reads), e.g. stuck on a paused path or queued for one.

    Held means in flight (``/sys/block/N/inflight``) or on the queue's requeue list.
    The second is where the guest kernel's request-based dm-mpath (the kernel oracle's)
    keeps I/O that waits for a path: it requeues it every 100 ms, and ``inflight``
    counts none of it. The list is in debugfs, mounted here if it is not yet.
    """
    return (_MOUNT_DEBUGFS
            + f"while [ {_held(disk)} -lt {at_least} ]; do sleep 0.02; done")


def wait_flush_held_command() -> str:
    """A guest command returning once a guest task waits for a flush that does not
    complete: a flush request is not counted in ``inflight``."""
    return f"while ! {_FLUSH_WAITED_FOR}; do sleep 0.02; done"


def wait_io_or_flush_held_command(disk: str) -> str:
    """A guest command returning once the disk holds a read or write, or a guest task
    waits for a flush: fio with ``fsync`` waits for its writes before each fsync, so
    what waits for a path may be either."""
    return (_MOUNT_DEBUGFS + f"while [ {_held(disk)} -lt 1 ] && ! {_FLUSH_WAITED_FOR}; "
            "do sleep 0.02; done")
