"""``python -m backend.bench.path``: vudm's whole per-I/O Python path, no guest.

What a guest request costs from the virtqueue element to the used ring, in this process:
``VirtioBlkDevice`` pops elements laid out in memory as libvhost-user lays them out
(VuVirtqElement + iovecs; a 16-byte header, the data, the status byte), decodes them,
submits to the sink (``dm``: a ``linear`` mapped device over the ``file:`` device;
``transport``: straight on the ``file:`` device), and pushes them back. Only the
library's pop/push/notify are stand-ins (Python callables that recycle the element), so
the figure is the Python side's CPU per I/O plus the kernel's AIO, the part the
hot-path work changes. QD requests stay in flight (a push re-queues its element and
kicks the queue on the next loop turn, as a guest's next request would). Paths run in
turn, the order rotating every round; medians are printed.

``--tree DIR`` (repeatable) runs the same measurement against other checkouts too,
interleaved with this one: A/B medians of two versions of the code on a shared machine.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import json
import os
import random
import statistics
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from backend import eventloop
from backend.vhost.libvhost import Ptr

ROOT = Path(__file__).resolve().parents[2]
BLOCK = 4096
_ELEM = struct.Struct("<III4xQQ")  # index, out_num, in_num, in_sg*, out_sg*
_OUTHDR = struct.Struct("<IIQ")


class FakeLib:
    """libvhost-user's pop/push/notify/free over a list of ready elements."""

    def __init__(self, loop: asyncio.AbstractEventLoop, elems: list[Ptr], kick: Any,
                 kick_fd: bool = False) -> None:
        self.loop = loop
        self.avail = list(elems)
        self.kick = kick
        self.kicked = False
        self.pushed = 0
        self.stop = False
        self.returned: list[Ptr] = []
        """Pushed elements: the guest posts them again at its next kick."""
        self.call_fd = os.eventfd(0, os.EFD_NONBLOCK)
        """The guest's call eventfd: a notify writes it, as libvhost-user's does."""
        self.notified = 0
        self.kick_fd = -1
        """``--kick fd``: the guest's kick is an eventfd the loop watches (add_reader),
        as libvhost-user's kick fd is, so the loop's select runs once per kick."""
        if kick_fd:
            self.kick_fd = os.eventfd(0, os.EFD_NONBLOCK)
            loop.add_reader(self.kick_fd, self._kicked_fd)

    def close(self) -> None:
        if self.kick_fd >= 0:
            self.loop.remove_reader(self.kick_fd)
            os.close(self.kick_fd)
        os.close(self.call_fd)

    def _kicked_fd(self) -> None:
        os.eventfd_read(self.kick_fd)
        self._kick()

    def pop(self, _dev: Ptr, _vq: Ptr, _size: int) -> Ptr:
        return self.avail.pop() if self.avail else Ptr(0)

    def push(self, _dev: Ptr, _vq: Ptr, elem: Ptr, _len: int) -> None:
        self.pushed += 1
        if not self.stop:
            self.returned.append(elem)
            if not self.kicked:
                self.kicked = True
                if self.kick_fd >= 0:
                    os.eventfd_write(self.kick_fd, 1)
                else:
                    self.loop.call_soon(self._kick)

    def _kick(self) -> None:
        self.kicked = False
        if self.stop:
            return
        self.avail.extend(self.returned)
        self.returned.clear()
        self.kick()

    def notify(self, _dev: Ptr, _vq: Ptr) -> None:
        self.notified += 1
        os.eventfd_write(self.call_fd, 1)  # the interrupt the guest would get

    def free_elem(self, _elem: Ptr) -> None:
        pass

    def vu_set_queue_handler(self, *_args: object) -> None:
        pass


def _elements(qd: int, nblocks: int, op: str, rng: random.Random,
              bs: int = BLOCK) -> tuple[Any, list[int]]:
    """QD elements laid out as vu_queue_pop lays them out: the element struct, then the
    in_sg and out_sg iovecs; a 16-byte header, the data in ``bs // 4096`` page-sized
    segments (as a guest's pages come), the status byte."""
    segs = bs // BLOCK
    meta_size = (64 + 16 * (segs + 2) + 64 + BLOCK - 1) & ~(BLOCK - 1)
    per = bs + meta_size
    raw = ctypes.create_string_buffer(qd * per + BLOCK)
    base = (ctypes.addressof(raw) + BLOCK - 1) & ~(BLOCK - 1)
    elems = []
    for i in range(qd):
        data = base + i * per
        meta = data + bs
        elem, iov = meta, meta + 64
        hdr = iov + 16 * (segs + 2)
        status = hdr + 16
        pages = [x for k in range(segs) for x in (data + k * BLOCK, BLOCK)]
        sector = rng.randrange(nblocks) * (bs // 512)
        if op == "read":
            ctypes.memmove(hdr, _OUTHDR.pack(0, 0, sector), 16)
            # in_sg: data, status; out_sg: header (laid out right after, as the library does)
            iovs = struct.pack(f"<{2 * segs + 4}Q", *pages, status, 1, hdr, 16)
            ctypes.memmove(iov, iovs, len(iovs))
            ctypes.memmove(elem, _ELEM.pack(i, 1, segs + 1, iov, iov + 16 * (segs + 1)),
                           _ELEM.size)
        else:
            ctypes.memmove(hdr, _OUTHDR.pack(1, 0, sector), 16)
            iovs = struct.pack(f"<{2 * segs + 4}Q", status, 1, hdr, 16, *pages)
            ctypes.memmove(iov, iovs, len(iovs))
            ctypes.memmove(elem, _ELEM.pack(i, segs + 1, 1, iov, iov + 16), _ELEM.size)
        elems.append(elem)
    return raw, elems


async def run_one(image: Path, path: str, qd: int, seconds: float, op: str,
                  device: str = "file", profile: bool = False,
                  kick_fd: bool = False, bs: int = BLOCK) -> dict[str, Any]:
    import backend.targets  # noqa: F401  (registers linear)
    from backend.devices.file import FileDevice
    from backend.devices.mem import NullDevice
    from backend.dm.mapped_device import MappedDevice
    from backend.dm.table import parse_table
    from backend.vhost.blk import VirtioBlkDevice
    from backend.vhost.devsink import DeviceSink

    loop = asyncio.get_running_loop()
    dev: Any = (FileDevice("img", image) if device == "file"
                else NullDevice("img", image.stat().st_size))
    sink: Any
    md = None
    if path == "dm":
        md = MappedDevice("vol")
        md.create(parse_table(f"0 {dev.size // 512} linear img 0", lambda _n: dev))
        sink = md
    else:
        sink = DeviceSink(dev)
    raw, elems = _elements(qd, dev.size // bs, op, random.Random(42), bs)
    blk: Any = None
    lib = FakeLib(loop, [Ptr(e) for e in elems], lambda: blk.process_queue(0), kick_fd)
    blk = VirtioBlkDevice(sink, lib=lib)  # type: ignore[arg-type]
    blk._running = True
    blk._started[0] = True
    blk._vqs[0] = 1
    blk._vq_ptrs[0] = Ptr(1)
    prof = None
    if profile:
        import cProfile

        prof = cProfile.Profile()
    try:
        t0, c0 = time.monotonic(), os.times()
        if prof is not None:
            prof.enable()
        blk.process_queue(0)
        await asyncio.sleep(seconds)  # the measured interval
        lib.stop = True
        lib.avail.clear()
        if prof is not None:
            prof.disable()
        n = lib.pushed
        t1, c1 = time.monotonic(), os.times()
        while blk.in_flight:
            await asyncio.sleep(0)
    finally:
        if md is not None:
            md.remove(force=True)
        if hasattr(dev, "close"):
            dev.close()
    del raw
    if blk.rejected:
        raise SystemExit(f"{blk.rejected} requests rejected: the element layout is wrong")
    cpu = (c1.user - c0.user) + (c1.system - c0.system)
    out: dict[str, Any] = {"iops": n / (t1 - t0), "cpu_us": cpu / n * 1e6,
                           "user_us": (c1.user - c0.user) / n * 1e6,
                           "notifies": lib.notified / max(1, lib.pushed),
                           "loop": type(loop).__module__.split(".")[0]}
    lib.close()
    if prof is not None:
        out["calls"] = _calls_per_io(prof, n)
    return out


def _calls_per_io(prof: Any, n: int) -> dict[str, float]:
    """Python-level calls per I/O by function (deterministic: no clock involved)."""
    import pstats

    st = pstats.Stats(prof)
    calls: dict[str, float] = {}
    for (file, line, func), (_cc, nc, _tt, _ct, _callers) in st.stats.items():  # type: ignore[attr-defined]
        name = f"{Path(file).name}:{func}" if line else func
        calls[name] = calls.get(name, 0.0) + nc / n
    return dict(sorted(calls.items(), key=lambda kv: -kv[1]))


def _child(args: argparse.Namespace) -> None:
    res = eventloop.run(run_one(args.image, args.path[0], args.qd[0], args.seconds, args.op,
                                args.device, args.calls, args.kick == "fd",
                                args.bs_kib << 10),
                        args.loop[0] if args.loop else None)
    print(json.dumps(res))


def _loop_of(sample: dict[str, Any], asked: str) -> str:
    """The loop a child ran: the one its result names (the running loop's package), else
    the one it was asked for, else asyncio (an older checkout's child names none, and
    those ran asyncio unless asked)."""
    return str(sample.get("loop") or asked or "asyncio")


def _module_in(tree: Path) -> str:
    """This benchmark's module in ``tree`` (older checkouts had it in qmp_scenarios/)."""
    if (tree / "backend" / "bench" / "path.py").exists():
        return "backend.bench.path"
    return "qmp_scenarios.bench_path"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", type=Path, default=ROOT / "build" / "bench-file.img")
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--path", nargs="+", default=["dm", "transport"],
                        choices=["dm", "transport"])
    parser.add_argument("--qd", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--op", choices=["read", "write"], default="read")
    parser.add_argument("--bs-kib", type=int, default=4,
                        help="request size in KiB, in 4 KiB segments (1024: a 1 MiB request)")
    parser.add_argument("--device", choices=["file", "null"], default="file",
                        help="null: completes inline, no syscalls (the Python path alone)")
    parser.add_argument("--calls", action="store_true",
                        help="count Python calls per I/O (cProfile; deterministic)")
    parser.add_argument("--tree", type=Path, action="append", default=[],
                        help="another checkout to measure, interleaved with this one")
    parser.add_argument("--kick", choices=["soon", "fd"], default="soon",
                        help="fd: kicks through an eventfd the loop watches, as a guest's do "
                             "(soon: the next loop turn, no select)")
    parser.add_argument("--loop", nargs="+", choices=eventloop.LOOPS,
                        help="event loops to measure, interleaved (default: the daemon's, "
                             f"${eventloop.ENV} or else uvloop when installed)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(args)
        return
    from backend.images import fill_image

    fill_image(args.image, args.size_mib << 20)
    trees = [ROOT, *[t.resolve() for t in args.tree]]
    # Unasked, no --loop goes to the children (older checkouts' children know none): each
    # runs its own daemon's default, which says what it is in its result.
    loops = args.loop or [""]
    if not args.loop:
        eventloop.chosen()  # a bad $VUDM_LOOP fails here, by name, not in every child
    configs = [(t, p, q, lp) for q in args.qd for p in args.path for t in trees for lp in loops]
    samples: dict[tuple[Path, str, int, str], list[dict[str, float]]] = {}
    for rnd in range(args.rounds):
        order = configs[rnd % len(configs):] + configs[:rnd % len(configs)]
        for tree, path, qd, lp in order:
            # a child per run: each version imports its own code, nothing warms the next
            out = subprocess.run(
                [sys.executable, "-m", _module_in(tree), "--child",
                 "--image", str(args.image), "--path", path, "--qd", str(qd),
                 "--seconds", str(args.seconds), "--op", args.op, "--device", args.device]
                + (["--bs-kib", str(args.bs_kib)] if args.bs_kib != 4 else [])
                + (["--calls"] if args.calls else [])
                + (["--kick", args.kick] if args.kick != "soon" else [])
                + (["--loop", lp] if lp else []),
                cwd=tree, env=os.environ | {"PYTHONPATH": str(tree)}, check=True,
                capture_output=True, text=True).stdout
            s = json.loads(out.strip().splitlines()[-1])
            samples.setdefault((tree, path, qd, lp), []).append(s)
            print(f"round {rnd} {tree.name:14} {_loop_of(s, lp):7} {path:9} qd {qd:2} "
                  f"{s['iops']:8.0f} IOPS "
                  f"{s['cpu_us']:6.1f} µs CPU/IO {s.get('notifies', 0):5.2f} notifies/IO",
                  flush=True)
            if "calls" in s:
                top = list(s["calls"].items())[:40]
                print(f"  {sum(s['calls'].values()):.1f} Python calls per I/O:\n    "
                      + "\n    ".join(f"{c:6.2f} {name}" for name, c in top if c >= 0.05))
    print(f"\nmedians of {args.rounds} rounds, {args.seconds:g}s each, "
          f"{args.bs_kib}k random {args.op}s")
    print(f"{'tree':14} {'loop':7} {'path':9} {'qd':>3} {'IOPS':>8} {'CPU µs/IO':>10} "
          f"{'user µs/IO':>10}")
    for (tree, path, qd, lp), ss in samples.items():
        print(f"{tree.name:14} {_loop_of(ss[0], lp):7} {path:9} {qd:3} "
              f"{statistics.median(s['iops'] for s in ss):8.0f} "
              f"{statistics.median(s['cpu_us'] for s in ss):10.1f} "
              f"{statistics.median(s['user_us'] for s in ss):10.1f}")


if __name__ == "__main__":
    main()
