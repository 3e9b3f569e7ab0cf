"""``python -m backend.bench.file``: the file: device's engines, no guest, no vhost.

Keeps QD random 4k O_DIRECT reads (or writes) in flight on a 1 GiB file (written once with random
data, so reads hit the disk rather than holes) through ``FileDevice.submit``, as vhost/
would, and measures the process's CPU time (user+sys, worker threads included) per I/O
and IOPS. Engines run in turn, the order rotating every round; medians over the rounds
are printed, since the two cores here are shared and single runs vary.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import os
import random
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from backend.blockio import Op, Status
from backend.devices.file import AioEngine, FileDevice
from backend.images import fill_image

ROOT = Path(__file__).resolve().parents[2]
BLOCK = 4096


@dataclass(frozen=True)
class Engine:
    """One configuration under test."""

    label: str
    aio: AioEngine
    workers: int = 8
    batch: bool = True


ENGINES = {
    e.label: e for e in [
        Engine("threads8", "threads", 8),
        Engine("threads4", "threads", 4),
        Engine("threads2", "threads", 2),
        Engine("threads1", "threads", 1),
        Engine("native", "native"),
        Engine("native-nobatch", "native", batch=False),
    ]
}


@dataclass(frozen=True)
class Sample:
    iops: float
    cpu_us_per_io: float
    user_us_per_io: float


async def run_one(image: Path, engine: Engine, qd: int, seconds: float,
                  op: Op = Op.READ) -> Sample:
    """QD I/Os kept in flight for ``seconds``; each completion submits the next one."""
    dev = FileDevice("bench", image, aio=engine.aio, workers=engine.workers)
    if engine.aio == "native" and dev.aio != "native":
        raise SystemExit(f"{engine.label}: no AIO context here")
    if dev._aio_ctx is not None:
        dev._aio_ctx._batch = engine.batch  # measuring the batching itself
    raw = ctypes.create_string_buffer(qd * BLOCK + BLOCK)
    base = (ctypes.addressof(raw) + BLOCK - 1) & ~(BLOCK - 1)
    nblocks = dev.size // BLOCK
    rng = random.Random(42)
    finished = asyncio.get_running_loop().create_future()
    state = {"ios": 0, "errors": 0, "running": qd, "stop": False}

    def start(slot: int) -> None:
        addr = base + slot * BLOCK

        def done(status: Status) -> None:
            state["ios"] += 1
            if status is not Status.OK:
                state["errors"] += 1
            if state["stop"]:
                state["running"] -= 1
                if not state["running"]:
                    finished.set_result(None)
                return
            start(slot)

        dev.submit(op, rng.randrange(nblocks) * BLOCK, BLOCK, [(addr, BLOCK)], done)

    try:
        t0, c0 = time.monotonic(), os.times()
        for slot in range(qd):
            start(slot)
        await asyncio.sleep(seconds)  # the measured interval, not a synchronization
        state["stop"] = True
        await asyncio.wait_for(finished, 30)
        t1, c1 = time.monotonic(), os.times()
    finally:
        dev.close()
    if state["errors"]:
        raise SystemExit(f"{engine.label}: {state['errors']} I/Os failed")
    ios = state["ios"]
    cpu = (c1.user - c0.user) + (c1.system - c0.system)
    return Sample(ios / (t1 - t0), cpu / ios * 1e6, (c1.user - c0.user) / ios * 1e6)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", type=Path, default=ROOT / "build" / "bench-file.img")
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--qd", type=int, nargs="+", default=[16, 32])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--op", choices=["read", "write"], default="read",
                        help="write overwrites the (allocated) image with random blocks")
    parser.add_argument("--engines", nargs="+", default=list(ENGINES), choices=list(ENGINES))
    args = parser.parse_args(argv)
    image = fill_image(args.image, args.size_mib << 20)
    engines = [ENGINES[label] for label in args.engines]
    op = Op.WRITE if args.op == "write" else Op.READ
    samples: dict[tuple[str, int], list[Sample]] = {}
    for rnd in range(args.rounds):
        order = engines[rnd % len(engines):] + engines[:rnd % len(engines)]
        for qd in args.qd:
            for engine in order:
                s = asyncio.run(run_one(image, engine, qd, args.seconds, op))
                samples.setdefault((engine.label, qd), []).append(s)
                print(f"round {rnd} qd {qd} {engine.label:15} {s.iops:8.0f} IOPS "
                      f"{s.cpu_us_per_io:6.1f} µs CPU/IO", flush=True)
    print(f"\nmedians of {args.rounds} rounds, {args.seconds:g}s each, "
          f"4k random {args.op}s, O_DIRECT")
    print(f"{'engine':15} {'qd':>3} {'IOPS':>8} {'CPU µs/IO':>10} {'user µs/IO':>10}")
    for (label, qd), ss in sorted(samples.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        print(f"{label:15} {qd:3} {statistics.median(s.iops for s in ss):8.0f} "
              f"{statistics.median(s.cpu_us_per_io for s in ss):10.1f} "
              f"{statistics.median(s.user_us_per_io for s in ss):10.1f}")


if __name__ == "__main__":
    main()
