"""Benchmark bookkeeping: samples, medians, vudm/QSD ratios, and the printed table."""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass
from typing import Any

from guests.fio_job import Workload as FioRw


@dataclass(frozen=True)
class Workload:
    name: str
    rw: FioRw
    bs: str
    iodepth: int


WORKLOADS = [
    Workload("4k-randread-qd32", "randread", "4k", 32),
    Workload("4k-randwrite-qd32", "randwrite", "4k", 32),
    Workload("1m-read-qd4", "read", "1M", 4),
    Workload("1m-write-qd4", "write", "1M", 4),
    Workload("4k-randread-qd1", "randread", "4k", 1),
]


@dataclass
class Sample:
    backend: str
    workload: str
    rep: int
    iops: float
    mbps: float
    lat_mean_us: float
    lat_p99_us: float
    ios: int
    cpu_s: float

    @property
    def cpu_us_per_io(self) -> float:
        return self.cpu_s * 1e6 / self.ios if self.ios else float("nan")


METRICS = ("iops", "mbps", "lat_mean_us", "lat_p99_us", "cpu_us_per_io")


def medians(samples: list[Sample]) -> dict[str, dict[str, dict[str, float]]]:
    """backend -> workload -> metric -> median over the repetitions."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    keys = sorted({(s.backend, s.workload) for s in samples})
    for backend, workload in keys:
        group = [s for s in samples if s.backend == backend and s.workload == workload]
        out.setdefault(backend, {})[workload] = {
            m: statistics.median(float(getattr(s, m)) for s in group) for m in METRICS
        } | {"runs": float(len(group))}
    return out


def ratios(med: dict[str, dict[str, dict[str, float]]], ours: str,
           theirs: str) -> dict[str, dict[str, float]]:
    """workload -> metric -> ours/theirs (IOPS > 1 is better for us; CPU/latency < 1 is)."""
    out: dict[str, dict[str, float]] = {}
    for workload, mine in med.get(ours, {}).items():
        other = med.get(theirs, {}).get(workload)
        if not other:
            continue
        out[workload] = {m: (mine[m] / other[m] if other[m] else float("nan"))
                         for m in METRICS}
    return out


def table(med: dict[str, dict[str, dict[str, float]]], backends: list[str]) -> str:
    """A plain-text table, one row per workload and backend."""
    head = (f"{'workload':<20} {'backend':<14} {'IOPS':>9} {'MB/s':>8} {'lat µs':>8} "
            f"{'p99 µs':>8} {'CPU µs/IO':>10} {'vs '+backends[1]:>12}")
    lines = [head, "-" * len(head)]
    workloads = [w.name for w in WORKLOADS]
    for wl in workloads:
        base = med.get(backends[1], {}).get(wl)
        for b in backends:
            m = med.get(b, {}).get(wl)
            if not m:
                continue
            rel = ""
            if base and b != backends[1] and base["iops"]:
                rel = (f"{m['iops'] / base['iops']:.2f}x io "
                       f"{m['cpu_us_per_io'] / base['cpu_us_per_io']:.2f}x cpu")
            lines.append(f"{wl:<20} {b:<14} {m['iops']:>9.0f} {m['mbps']:>8.1f} "
                         f"{m['lat_mean_us']:>8.0f} {m['lat_p99_us']:>8.0f} "
                         f"{m['cpu_us_per_io']:>10.1f} {rel:>12}")
    return "\n".join(lines)


def to_json(samples: list[Sample], backends: list[str], meta: dict[str, Any]) -> dict[str, Any]:
    med = medians(samples)
    return {
        "meta": meta,
        "backends": backends,
        "workloads": [asdict(w) for w in WORKLOADS],
        "samples": [asdict(s) | {"cpu_us_per_io": s.cpu_us_per_io} for s in samples],
        "medians": med,
        "ratios": {f"vudm/{b}": ratios(med, "vudm", b) for b in backends if b != "vudm"},
    }
