"""The picture next to bench.json: IOPS and backend CPU per I/O per workload, one bar
per backend (medians; a thin line spans the runs' min..max)."""

from __future__ import annotations

from pathlib import Path

from .bench_stats import WORKLOADS, Sample

COLORS = {"vudm": "tab:blue", "vudm-paired": "tab:purple", "vudm-transport": "tab:cyan",
          "qsd-threads": "tab:gray", "qsd-native": "tab:orange"}


def draw_bench(samples: list[Sample], backends: list[str], path: Path, title: str) -> None:
    import statistics

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [s for s in samples if s.status == "ok"]
    workloads = [w.name for w in WORKLOADS if any(s.workload == w.name for s in samples)]
    fig, axes = plt.subplots(2, 1, figsize=(12, 8), dpi=100, sharex=True)
    width = 0.8 / max(1, len(backends))
    metrics = (("iops", "guest IOPS (higher is better)"),
               ("cpu_us_per_io", "backend CPU µs per I/O (lower is better)"))
    for ax, (metric, label) in zip(axes, metrics, strict=True):
        for bi, b in enumerate(backends):
            xs, ys, lo, hi = [], [], [], []
            for wi, wl in enumerate(workloads):
                vals = [float(getattr(s, metric)) for s in done
                        if s.backend == b and s.workload == wl]
                if not vals:
                    continue
                med = statistics.median(vals)
                xs.append(wi + (bi - (len(backends) - 1) / 2) * width)
                ys.append(med)
                lo.append(med - min(vals))
                hi.append(max(vals) - med)
            ax.bar(xs, ys, width, label=b, color=COLORS.get(b), yerr=[lo, hi],
                   error_kw={"elinewidth": 0.8, "capsize": 2})
            for wi, wl in enumerate(workloads):  # mark what never finished
                bad = [s.status for s in samples
                       if s.backend == b and s.workload == wl and s.status != "ok"]
                if bad:
                    x = wi + (bi - (len(backends) - 1) / 2) * width
                    ax.text(x, 0, "\n".join(sorted(set(bad))), rotation=90, fontsize=7,
                            color="tab:red", ha="center", va="bottom")
        ax.set_ylabel(label)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(ncols=len(backends), fontsize=8, loc="upper right")
    axes[0].set_title(title)
    axes[1].set_xticks(range(len(workloads)), workloads)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
