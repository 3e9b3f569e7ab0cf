"""Benchmark bookkeeping: samples, medians, vudm/QSD ratios, the dm layer's own cost,
and the printed table. Only runs that finished (``status == "ok"``) enter a median; hung
and failed runs are listed apart with what they left behind."""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

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


RunStatus = Literal["ok", "hung", "failed", "skipped"]


@dataclass
class Sample:
    backend: str
    workload: str
    rep: int
    iops: float = 0.0
    mbps: float = 0.0
    lat_mean_us: float = 0.0
    lat_p99_us: float = 0.0
    ios: int = 0
    cpu_s: float = 0.0
    status: RunStatus = "ok"
    error: str = ""
    evidence: dict[str, Any] = field(default_factory=dict)

    @property
    def cpu_us_per_io(self) -> float:
        return self.cpu_s * 1e6 / self.ios if self.ios else float("nan")


METRICS = ("iops", "mbps", "lat_mean_us", "lat_p99_us", "cpu_us_per_io")


def medians(samples: list[Sample]) -> dict[str, dict[str, dict[str, float]]]:
    """backend -> workload -> metric -> median over the repetitions."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    done = [s for s in samples if s.status == "ok"]
    keys = sorted({(s.backend, s.workload) for s in done})
    for backend, workload in keys:
        group = [s for s in done if s.backend == backend and s.workload == workload]
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


BASELINE = "qsd-native"
"""The bar: QSD's best mode."""


PAIRED = "vudm-paired"
"""vudm run in vudm-transport's guest, back to back with it: one half of a dm-cost pair."""


def dm_pairs(samples: list[Sample]) -> dict[str, list[float]]:
    """workload -> one difference per round: CPU µs per I/O of vudm-paired minus
    vudm-transport, two runs back to back in one guest (so the guest, the round and the
    machine's state are common to both and cancel)."""
    done = {(s.backend, s.workload, s.rep): s for s in samples if s.status == "ok"}
    out: dict[str, list[float]] = {}
    for (backend, workload, rep), full in sorted(done.items()):
        bare = done.get(("vudm-transport", workload, rep))
        if backend == PAIRED and bare is not None:
            out.setdefault(workload, []).append(full.cpu_us_per_io - bare.cpu_us_per_io)
    return out


def dm_cost(samples: list[Sample]) -> dict[str, float]:
    """workload -> CPU µs per I/O the dm layer adds: the median of its pairs."""
    return {wl: statistics.median(diffs) for wl, diffs in dm_pairs(samples).items()}


def table(med: dict[str, dict[str, dict[str, float]]], backends: list[str],
          baseline: str = BASELINE, dm: dict[str, float] | None = None) -> str:
    """A plain-text table, one row per workload and backend, ratios against ``baseline``,
    and ``dm`` (the dm layer's own CPU cost per I/O, from pairs) on vudm-paired's rows."""
    head = (f"{'workload':<18} {'backend':<15} {'runs':>4} {'IOPS':>8} {'MB/s':>7} "
            f"{'lat µs':>7} {'p99 µs':>7} {'CPU µs/IO':>9} {'vs ' + baseline:>20} "
            f"{'dm µs/IO':>8}")
    lines = [head, "-" * len(head)]
    dm = dm or {}
    for wl in (w.name for w in WORKLOADS):
        base = med.get(baseline, {}).get(wl)
        for b in backends:
            m = med.get(b, {}).get(wl)
            if not m:
                continue
            rel = ""
            if base and b != baseline and base["iops"] and base["cpu_us_per_io"]:
                rel = (f"{m['iops'] / base['iops']:.2f}x io "
                       f"{m['cpu_us_per_io'] / base['cpu_us_per_io']:.2f}x cpu")
            extra = f"{dm[wl]:8.1f}" if b == PAIRED and wl in dm else ""
            lines.append(f"{wl:<18} {b:<15} {m['runs']:>4.0f} {m['iops']:>8.0f} "
                         f"{m['mbps']:>7.1f} {m['lat_mean_us']:>7.0f} {m['lat_p99_us']:>7.0f} "
                         f"{m['cpu_us_per_io']:>9.1f} {rel:>20} {extra:>8}")
    if dm:
        lines.append(f"dm µs/IO: {PAIRED} minus vudm-transport, run back to back in one "
                     "guest; the median of one difference per round")
    return "\n".join(lines)


VUDM_BACKENDS = frozenset({"vudm", PAIRED, "vudm-transport"})
"""The backends whose hang or failure fails the bench (QSD's are reported only)."""


def vudm_runs_failed(samples: list[Sample]) -> list[Sample]:
    """The runs of vudm's own backends that did not finish: ``make bench`` fails on these."""
    return [s for s in samples if s.backend in VUDM_BACKENDS and s.status != "ok"]


def incidents(samples: list[Sample]) -> str:
    """One line per run that did not finish, with its error (and, for a hang, where the
    evidence says its requests stopped)."""
    lines = []
    for s in samples:
        if s.status == "ok":
            continue
        lines.append(f"{s.status.upper():7} round {s.rep + 1} {s.backend:<15} {s.workload:<18}"
                     f" {s.error[:160]}")
        if s.evidence and s.evidence.get("verdict"):
            lines.append(f"        {s.evidence['verdict']}")
    return "\n".join(lines)


def to_json(samples: list[Sample], backends: list[str], meta: dict[str, Any]) -> dict[str, Any]:
    med = medians(samples)
    return {
        "meta": meta,
        "backends": backends,
        "workloads": [asdict(w) for w in WORKLOADS],
        "samples": [asdict(s) | {"cpu_us_per_io": s.cpu_us_per_io} for s in samples],
        "medians": med,
        "ratios": {f"{ours}/{b}": ratios(med, ours, b)
                   for ours in ("vudm", "vudm-transport") for b in backends
                   if b not in ("vudm", "vudm-transport")},
        "dm_cpu_us_per_io": dm_cost(samples),
        "dm_cpu_us_per_io_pairs": dm_pairs(samples),
        "hung": [{"backend": s.backend, "workload": s.workload, "round": s.rep + 1,
                  "error": s.error} for s in samples if s.status == "hung"],
        "failed": [{"backend": s.backend, "workload": s.workload, "round": s.rep + 1,
                    "error": s.error} for s in samples if s.status == "failed"],
    }
