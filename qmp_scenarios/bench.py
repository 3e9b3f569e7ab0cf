"""``make bench``: vudm against qemu-storage-daemon, same guest, same image, same run.

One TCG guest is booted once. Each round hotplugs a disk served by each backend in turn
(vudm: ``linear`` over the image through ``vudm serve``; QSD with aio=threads and with
aio=native, both cache.direct=on like vudm's O_DIRECT), runs the five workloads with
fio in the guest, and measures the backend's CPU time from /proc around each run. The
order of backends rotates every round, and medians over the rounds are reported: runs
here vary by 15-30%, and under TCG the guest, not the backend, caps IOPS, so CPU µs per
I/O is the sharper figure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Protocol

from backend.control.testing import DaemonProcess
from guests.fio import run_fio
from guests.fio_job import FioJob, bench_job
from guests.machine import Guest

from .bench_stats import WORKLOADS, Sample, Workload, medians, table, to_json
from .qsd import StorageDaemon, process_cpu_seconds
from .rig import make_image

log = logging.getLogger(__name__)


class Backend(Protocol):
    label: str
    socket: Path

    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    def cpu_seconds(self) -> float: ...


class VudmBackend:
    """``vudm serve`` with a linear table over the image and one vhost-user-blk export."""

    label = "vudm"

    def __init__(self, rundir: Path, image: Path) -> None:
        self.rundir = rundir
        self.socket = rundir / "vudm-blk.sock"
        self.image = image
        self.config = rundir / "vudm.toml"
        sectors = image.stat().st_size // 512
        self.config.write_text(
            f'[[device]]\nname = "img"\nuri = "file:{image}"\n\n'
            f'[[dm]]\nname = "vol"\ntable = "0 {sectors} linear img 0"\n\n'
            f'[[export]]\nid = "exp"\ndm = "vol"\nsocket = "{self.socket}"\n'
            f"writable = true\n")
        self.daemon = DaemonProcess(rundir / "vudm", config=self.config)

    async def start(self) -> None:
        await self.daemon.start()

    async def stop(self) -> None:
        await self.daemon.stop()

    def cpu_seconds(self) -> float:
        assert self.daemon.proc is not None
        return process_cpu_seconds(self.daemon.proc.pid)


class QsdBackend:
    """qemu-storage-daemon exporting the image over vhost-user-blk."""

    def __init__(self, rundir: Path, image: Path, aio: str) -> None:
        self.label = f"qsd-{aio}"
        self.socket = rundir / f"{self.label}.sock"
        self.daemon = StorageDaemon(rundir / self.label, [
            "--blockdev", f"driver=file,node-name=file0,filename={image},"
                          f"cache.direct=on,aio={aio}",
            "--blockdev", "driver=raw,node-name=disk0,file=file0",
            "--export", f"type=vhost-user-blk,id=exp0,node-name=disk0,addr.type=unix,"
                        f"addr.path={self.socket},writable=on,num-queues=1",
        ])

    async def start(self) -> None:
        self.socket.unlink(missing_ok=True)
        await self.daemon.start()

    async def stop(self) -> None:
        await self.daemon.stop()

    def cpu_seconds(self) -> float:
        return self.daemon.cpu_seconds()


async def _measure(guest: Guest, backend: Backend, disk: str, wl: Workload, rep: int,
                   runtime: float) -> Sample:
    job = bench_job(disk, wl.rw, bs=wl.bs, iodepth=wl.iodepth, runtime_s=runtime,
                    ramp_time_s=1.0)
    cpu0 = backend.cpu_seconds()
    res = await run_fio(guest, job)
    cpu1 = backend.cpu_seconds()
    if not res.ok:
        raise RuntimeError(f"{backend.label} {wl.name}: fio failed: exit {res.exit_code}, "
                           f"{res.errors} errors: {res.stderr[-500:]}")
    d = res.read if wl.rw in ("randread", "read") else res.write
    # CPU is counted over the whole run including ramp time; so are the I/Os we divide by
    ios = d.ios + int(d.iops * 1.0)
    return Sample(backend=backend.label, workload=wl.name, rep=rep, iops=d.iops,
                  mbps=d.bw_bytes / 1e6, lat_mean_us=d.lat_mean_us, lat_p99_us=d.lat_p99_us,
                  ios=ios, cpu_s=cpu1 - cpu0)


async def run_bench(workdir: Path, reps: int, runtime: float, size_mb: int,
                    workloads: list[Workload], samples: list[Sample]) -> float:
    """Append a Sample per run to ``samples`` (so a failure keeps what was measured);
    return the guest's boot time."""
    workdir.mkdir(parents=True, exist_ok=True)
    image = workdir / "bench.img"
    make_image(image, size_mb << 20)
    backends: list[Backend] = [VudmBackend(workdir, image), QsdBackend(workdir, image, "threads"),
                               QsdBackend(workdir, image, "native")]
    try:
        return await _rounds(workdir, backends, reps, runtime, size_mb, workloads, samples)
    finally:
        for b in backends:  # a failed round must not leave a daemonized QSD behind
            with contextlib.suppress(Exception):
                await b.stop()


BACKENDS = ["vudm", "qsd-threads", "qsd-native"]


async def _rounds(workdir: Path, backends: list[Backend], reps: int, runtime: float,
                  size_mb: int, workloads: list[Workload], samples: list[Sample]) -> float:
    async with Guest(workdir / "guest", memory_mb=512, vcpus=1) as guest:
        boot = guest.boot_seconds or 0.0
        # fill the image once so reads hit allocated blocks on every backend
        first = backends[1]
        await first.start()
        disk = await guest.hotplug_vhost_user_blk("fill", first.socket)
        await run_fio(guest, FioJob(filename=disk, rw="write", bs="1M", iodepth=4,
                                    size=f"{size_mb}M", name="fill"))
        await guest.unplug("fill")
        await first.stop()
        for rep in range(reps):
            order = backends[rep % len(backends):] + backends[:rep % len(backends)]
            for backend in order:
                await backend.start()
                disk_id = f"{backend.label}-{rep}"
                disk = await guest.hotplug_vhost_user_blk(disk_id, backend.socket)
                for wl in workloads:
                    s = await _measure(guest, backend, disk, wl, rep, runtime)
                    samples.append(s)
                    print(f"  round {rep + 1}/{reps} {backend.label:<12} {wl.name:<18} "
                          f"{s.iops:8.0f} IOPS {s.cpu_us_per_io:7.1f} µs CPU/IO", flush=True)
                await guest.unplug(disk_id)
                await backend.stop()
    return boot


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="vudm-bench", description=__doc__)
    p.add_argument("--json", type=Path, default=Path("results/bench.json"))
    p.add_argument("--reps", type=int, default=int(os.environ.get("VUDM_BENCH_REPS", "3")))
    p.add_argument("--runtime", type=float,
                   default=float(os.environ.get("VUDM_BENCH_RUNTIME", "8")))
    p.add_argument("--size-mb", type=int, default=1024)
    p.add_argument("--workdir", type=Path, default=Path("build/bench"))
    p.add_argument("--only", help="comma-separated workload names")
    ns = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    workloads = [w for w in WORKLOADS if not ns.only or w.name in ns.only.split(",")]
    t0 = time.monotonic()
    samples: list[Sample] = []
    boot, error = 0.0, ""
    try:
        boot = asyncio.run(run_bench(ns.workdir.resolve(), ns.reps, ns.runtime, ns.size_mb,
                                     workloads, samples))
    except Exception as e:  # keep and show what was measured, then fail
        error = f"{type(e).__name__}: {str(e)[:500]}"
        print(f"\nbench failed after {len(samples)} samples: {error}", file=sys.stderr)
    backends = BACKENDS
    meta = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "host": platform.node(), "cpus": os.cpu_count(),
        "qemu": subprocess.run(["qemu-system-x86_64", "--version"], capture_output=True,
                               text=True).stdout.splitlines()[0],
        "guest": "TCG, 1 vCPU, 512 MiB", "reps": ns.reps, "runtime_s": ns.runtime,
        "image_mb": ns.size_mb, "guest_boot_s": boot,
        "wall_s": time.monotonic() - t0,
        "note": "medians over rounds with rotating backend order; CPU = backend user+sys",
        "error": error,
    }
    doc = to_json(samples, backends, meta)
    ns.json.parent.mkdir(parents=True, exist_ok=True)
    ns.json.write_text(json.dumps(doc, indent=2) + "\n")
    print()
    print(table(medians(samples), backends))
    print(f"\nJSON: {ns.json}")
    return 1 if error else 0


if __name__ == "__main__":
    sys.exit(main())
