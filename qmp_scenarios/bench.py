"""``make bench``: vudm against qemu-storage-daemon, same image, same guest setup.

Backends: vudm (``linear`` over the image through ``vudm serve``), vudm-transport (the
vhost-user-blk export straight on the ``file:`` device, no mapped device), QSD
aio=threads and aio=native (cache.direct=on, like vudm's O_DIRECT). Every backend gets a
freshly booted TCG guest in every round (so one backend's leftovers cannot wedge the
next), the order rotating per round; fio runs the five workloads and the backend's CPU
time is read from /proc around each run.

The dm layer's own cost is measured in pairs: vudm-transport's guest also has a second
vudm disk (``vudm-paired``), and each workload runs on both, back to back, the first
alternating. Guests differ by more than the dm layer costs (a backend's medians swing
by 10-15 µs per I/O from one guest to the next), so the dm figure is the median of one
same-guest difference per round, not a difference of two backends' medians.

Every run has a deadline. A run that misses it is recorded as ``hung`` with what it left
behind (the backend's thread states and kernel stacks, the guest's blk-mq debugfs and
blocked tasks, the vring's indexes as QEMU sees them), the rest of that backend's round
is skipped, its guest and backend are killed, and the bench goes on. Medians come from
finished runs only. Exit status: non-zero only when a vudm run hung or failed; a QSD
hang is reported, not fatal.

Knobs (environment or flags): BENCH_ROUNDS (3), BENCH_SECONDS (8 s per run),
BENCH_TIMEOUT (per-run deadline, default 2 x (seconds + ramp) + 20 s), BENCH_BACKENDS,
BENCH_WORKLOADS (comma-separated names). A smoke run: ``BENCH_ROUNDS=1 BENCH_SECONDS=2``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path

from backend.images import fill_image
from guests.fio import start_fio
from guests.fio_job import bench_job
from guests.machine import Guest

from .bench_backends import Backend, make_units, stop_quietly
from .bench_evidence import GUEST_BRINGUP, collect
from .bench_plot import draw_bench
from .bench_stats import (
    PAIRED,
    WORKLOADS,
    Sample,
    Workload,
    dm_cost,
    incidents,
    medians,
    table,
    to_json,
    vudm_runs_failed,
)

log = logging.getLogger(__name__)

RAMP_S = 1.0


class RunHung(Exception):
    """A fio run missed its deadline."""


async def _measure(guest: Guest, backend: Backend, disk: str, wl: Workload, rep: int,
                   runtime: float, deadline: float, freeze: bool = False) -> Sample:
    job = bench_job(disk, wl.rw, bs=wl.bs, iodepth=wl.iodepth, runtime_s=runtime,
                    ramp_time_s=RAMP_S)
    cpu0 = backend.cpu_seconds()
    handle = await start_fio(guest, job)
    if freeze and backend.pid is not None:
        os.kill(backend.pid, signal.SIGSTOP)  # --freeze: a backend that stops answering
    try:
        async with asyncio.timeout(deadline):
            res = await handle.wait(deadline + 60.0)  # the outer deadline fires first
    except TimeoutError:
        raise RunHung(f"fio did not finish within {deadline:.0f} s "
                      f"({runtime:g} s run + {RAMP_S:g} s ramp)") from None
    cpu1 = backend.cpu_seconds()
    if not res.ok:
        raise RuntimeError(f"fio failed: exit {res.exit_code}, {res.errors} errors: "
                           f"{res.stderr[-300:]}")
    d = res.read if wl.rw in ("randread", "read") else res.write
    # CPU is counted over the whole run including ramp time; so are the I/Os we divide by
    ios = d.ios + int(d.iops * RAMP_S)
    return Sample(backend=backend.label, workload=wl.name, rep=rep, iops=d.iops,
                  mbps=d.bw_bytes / 1e6, lat_mean_us=d.lat_mean_us, lat_p99_us=d.lat_p99_us,
                  ios=ios, cpu_s=cpu1 - cpu0)


async def unit_round(workdir: Path, unit: list[Backend], rep: int, runtime: float,
                     deadline: float, workloads: list[Workload], samples: list[Sample],
                     boots: list[float], freeze: frozenset[str] = frozenset()) -> None:
    """One round of a unit (one backend, or a dm-cost pair) in one fresh guest: every
    workload on every backend of the unit, or up to a hang. A pair alternates which
    backend runs first, by round and by workload, so neither always runs warmer."""
    done: set[tuple[str, str]] = set()
    hung = False
    name = "+".join(b.label for b in unit)
    try:
        async with Guest(workdir / "guests" / f"r{rep + 1}-{name}",
                         memory_mb=512, vcpus=1) as guest:
            boots.append(guest.boot_seconds or 0.0)
            (await guest.run(GUEST_BRINGUP, timeout=30.0)).check("bench guest bring-up")
            disks: dict[str, tuple[str, str]] = {}
            for i, backend in enumerate(unit):
                await backend.start()
                disk_id = f"bench{i}"
                disks[backend.label] = (disk_id, await guest.hotplug_vhost_user_blk(
                    disk_id, backend.socket))
            for w, wl in enumerate(workloads):
                turn = (rep + w) % len(unit)
                for backend in unit[turn:] + unit[:turn]:
                    disk_id, disk = disks[backend.label]
                    try:
                        s = await _measure(guest, backend, disk, wl, rep, runtime, deadline,
                                           backend.label in freeze)
                    except RunHung as e:
                        hung = True
                        print(f"  round {rep + 1} {backend.label:<15} {wl.name:<18} HUNG: "
                              f"collecting evidence", flush=True)
                        evidence = await collect(guest, backend, disk_id, disk)
                        print(f"    {evidence['verdict']}", flush=True)
                        samples.append(Sample(backend.label, wl.name, rep, status="hung",
                                              error=str(e), evidence=evidence))
                        done.add((backend.label, wl.name))
                        os.kill(guest.pid, signal.SIGKILL)  # a quit would wait on the backend
                        break
                    except Exception as e:
                        s = Sample(backend.label, wl.name, rep, status="failed",
                                   error=f"{type(e).__name__}: {str(e)[:500]}")
                    samples.append(s)
                    done.add((backend.label, wl.name))
                    print(f"  round {rep + 1} {backend.label:<15} {wl.name:<18} "
                          + (f"{s.iops:8.0f} IOPS {s.cpu_us_per_io:7.1f} µs CPU/IO"
                             if s.status == "ok" else f"FAILED: {s.error[:200]}"), flush=True)
                if hung:
                    break
            if not hung:
                for disk_id, _ in disks.values():
                    await guest.unplug(disk_id)
    except Exception as e:  # boot, start, hotplug, unplug: the round's other runs fail
        error = f"{type(e).__name__}: {str(e)[:500]}"
        print(f"  round {rep + 1} {name:<15} FAILED: {error[:300]}", flush=True)
        for backend in unit:
            for wl in workloads:
                if (backend.label, wl.name) not in done:
                    samples.append(Sample(backend.label, wl.name, rep, status="failed",
                                          error=error))
                    done.add((backend.label, wl.name))
    finally:
        for backend in unit:
            await stop_quietly(backend, kill=hung)
    for backend in unit:
        for wl in workloads:
            if (backend.label, wl.name) not in done:
                samples.append(Sample(backend.label, wl.name, rep, status="skipped",
                                      error="skipped: an earlier run of this round hung"))


async def run_bench(workdir: Path, rounds: int, runtime: float, deadline: float,
                    size_mb: int, backend_labels: list[str], workloads: list[Workload],
                    samples: list[Sample], boots: list[float],
                    freeze: frozenset[str] = frozenset()) -> None:
    """Append a Sample per run to ``samples`` (so a crash keeps what was measured)."""
    workdir.mkdir(parents=True, exist_ok=True)
    image = workdir / "bench.img"
    fill_image(image, size_mb << 20)
    units = make_units(workdir, image, backend_labels)
    for rep in range(rounds):
        shift = rep % len(units)
        for unit in units[shift:] + units[:shift]:
            await unit_round(workdir, unit, rep, runtime, deadline, workloads, samples,
                             boots, freeze)


ALL_BACKENDS = ["vudm", "vudm-transport", "qsd-threads", "qsd-native"]


def _env(name: str, default: str) -> str:
    return os.environ.get(name) or default


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="vudm-bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", type=Path, default=Path("results/bench.json"))
    p.add_argument("--rounds", type=int, default=int(_env("BENCH_ROUNDS", "3")))
    p.add_argument("--seconds", type=float, default=float(_env("BENCH_SECONDS", "8")))
    p.add_argument("--timeout", type=float, default=float(_env("BENCH_TIMEOUT", "0")),
                   help="per-run deadline in seconds (0: 2 x (seconds + ramp) + 20)")
    p.add_argument("--size-mb", type=int, default=1024)
    p.add_argument("--workdir", type=Path, default=Path("build/bench"))
    p.add_argument("--backends", default=_env("BENCH_BACKENDS", ",".join(ALL_BACKENDS)))
    p.add_argument("--only", default=_env("BENCH_WORKLOADS", ""),
                   help="comma-separated workload names")
    p.add_argument("--freeze", default="",
                   help="comma-separated backends to SIGSTOP once their first run started "
                        "(shows what a hung run reports; the bench then exits non-zero "
                        "if one of them is vudm's)")
    ns = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    workloads = [w for w in WORKLOADS if not ns.only or w.name in ns.only.split(",")]
    backends = [b for b in ALL_BACKENDS if b in ns.backends.split(",")]
    deadline = ns.timeout or 2 * (ns.seconds + RAMP_S) + 20.0
    t0 = time.monotonic()
    samples: list[Sample] = []
    boots: list[float] = []
    error = ""
    try:
        asyncio.run(run_bench(ns.workdir.resolve(), ns.rounds, ns.seconds, deadline,
                              ns.size_mb, backends, workloads, samples, boots,
                              frozenset(ns.freeze.split(",")) - {""}))
    except BaseException as e:  # keep and show what was measured, then fail
        error = f"{type(e).__name__}: {str(e)[:500]}"
        print(f"\nbench stopped after {len(samples)} samples: {error}", file=sys.stderr)
    meta = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "host": platform.node(), "cpus": os.cpu_count(),
        "loadavg_at_end": os.getloadavg(),
        "qemu": subprocess.run(["qemu-system-x86_64", "--version"], capture_output=True,
                               text=True).stdout.splitlines()[0],
        "guest": "TCG, 1 vCPU, 512 MiB, a fresh one per backend and round "
                 "(vudm-paired and vudm-transport share one)",
        "rounds": ns.rounds, "runtime_s": ns.seconds, "ramp_s": RAMP_S,
        "run_deadline_s": deadline, "image_mb": ns.size_mb,
        "guest_boot_s": sorted(boots)[len(boots) // 2] if boots else None,
        "wall_s": time.monotonic() - t0,
        "note": "medians over finished runs, rotating backend order; CPU = backend "
                "user+sys over ramp + run",
        "error": error,
    }
    # The table's rows: the pair's vudm next to vudm-transport, its other half.
    backends = [x for b in backends for x in ((PAIRED, b) if b == "vudm-transport" else (b,))]
    doc = to_json(samples, backends, meta)
    ns.json.parent.mkdir(parents=True, exist_ok=True)
    ns.json.write_text(json.dumps(doc, indent=2) + "\n")
    png = ns.json.with_suffix(".png")
    try:
        draw_bench(samples, backends, png,
                   f"vudm bench {meta['date']}: {ns.rounds} rounds x {ns.seconds:g} s, "
                   f"medians, TCG guest")
    except Exception as e:
        print(f"no PNG: {type(e).__name__}: {e}", file=sys.stderr)
    print()
    print(table(medians(samples), backends, dm=dm_cost(samples)))
    bad = incidents(samples)
    if bad:
        print(f"\nruns that did not finish (evidence in the JSON):\n{bad}")
    print(f"\nJSON: {ns.json}\nPNG:  {png}")
    return 1 if error or vudm_runs_failed(samples) else 0


if __name__ == "__main__":
    sys.exit(main())
