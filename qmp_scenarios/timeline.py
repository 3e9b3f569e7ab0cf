"""The timeline picture next to a scenario's JSON: guest I/O per second, steps marked."""

from __future__ import annotations

from pathlib import Path

from .result import ScenarioResult


def draw_timeline(result: ScenarioResult, path: Path) -> None:
    """Write a PNG: read and write IOPS seen by the guest over time, one line per step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(11, 4.5), dpi=100)
    if result.iops:
        t = [p[0] for p in result.iops]
        ax.plot(t, [p[1] for p in result.iops], label="read IOPS", color="tab:blue")
        ax.plot(t, [p[2] for p in result.iops], label="write IOPS", color="tab:orange")
    top = max([max(p[1], p[2]) for p in result.iops] or [1.0])
    for i, s in enumerate(result.steps):
        color = "tab:green" if s.ok else "tab:red"
        ax.axvline(s.start, color=color, alpha=0.5, linewidth=1)
        ax.text(s.start, top * (0.98 - 0.07 * (i % 6)), f" {s.name}", fontsize=7,
                color=color, va="top")
    status = "PASSED" if result.passed else "FAILED"
    ax.set_title(f"{result.scenario}: {status} (expect {result.expect})")
    ax.set_xlabel("seconds since scenario start")
    ax.set_ylabel("guest I/O per second")
    ax.set_ylim(bottom=0)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
