"""The timeline picture next to a scenario's JSON, for a person reading what happened.

Three panels on one time axis:

- steps: every step a bar from its start to its end with its name beside it, stacked
  in lanes so that no two labels overlap (green: ok, red: failed);
- paths: one lane per path, green while the daemon had it up, red while failed (from
  its PATH_FAILED / PATH_REINSTATED events), a cross where the rig killed, paused or
  partitioned it;
- guest I/O: read and write IOPS as the guest's fio logged them; the legend carries the
  daemon's counters (what happened inside vudm) and the evidence verdict.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .evidence import lookup, shortfalls
from .result import ScenarioResult, StepRecord

WIDTH_IN = 13.0
DPI = 100
LEFT, RIGHT = 0.06, 0.70
"""Axes span of the figure width; the legend lives right of the axes, off the data."""
LABEL_PT = 7.5
LANE_IN = 0.24
_PATH_STEP = re.compile(r"^(kill|pause|continue|restore|partition|heal)(?: TCP)? path (\S+)")
_ADD_PATH = re.compile(r"^add (?:TCP )?NBD path (\S+)")
_CORE = ("ios", "split", "requeued", "pushed-back", "deferred-reissued", "flush-copies",
         "eio", "interrupted-suspends")


@dataclass(frozen=True)
class _Placed:
    step: StepRecord
    lane: int
    label_x: float
    """Where the label starts: at the step's start, or moved left to end at the axis."""


def draw_timeline(result: ScenarioResult, path: Path) -> None:
    """Write the PNG (see the module docstring)."""
    import matplotlib
    import matplotlib.pyplot as plt

    # Labels are the steps' own text (shell commands with "$(...)"), never TeX.
    with matplotlib.rc_context({"text.parse_math": False}):
        fig = build_figure(result)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path)
    plt.close(fig)


def build_figure(result: ScenarioResult) -> Any:
    """The figure: axes 0 steps, 1 paths, 2 guest I/O (the caller saves and closes it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t_end = _t_end(result)
    t_start = _t_start(result.steps, t_end)
    shown = [s for s in result.steps if s.end >= t_start]
    placed, lanes = _place_steps(shown, t_start, t_end)
    paths = _path_names(result)
    heights = [max(1.2, lanes * LANE_IN + 0.3), max(0.5, len(paths) * 0.32 + 0.2), 2.6]
    total_in = sum(heights) + 1.2
    fig = plt.figure(figsize=(WIDTH_IN, total_in), dpi=DPI)
    grid = fig.add_gridspec(3, 1, height_ratios=heights, hspace=0.12, left=LEFT,
                            right=RIGHT, top=1 - 0.7 / total_in, bottom=0.5 / total_in)
    ax_steps = fig.add_subplot(grid[0])
    ax_paths = fig.add_subplot(grid[1], sharex=ax_steps)
    ax_io = fig.add_subplot(grid[2], sharex=ax_steps)
    ax_steps.set_xlim(t_start, t_end)

    _draw_steps(ax_steps, placed, lanes)
    _draw_paths(ax_paths, result, paths, t_end)
    _draw_io(ax_io, result)

    status = "PASSED" if result.passed else "FAILED"
    verdict = "\n".join(textwrap.wrap(result.verdict, 150)[:2])
    hidden = [s.name for s in result.steps if s.end < t_start]
    if t_start > 0:
        verdict += "\n" + textwrap.shorten(
            f"the time axis starts at {t_start:.0f} s, once the guest has booted; before "
            f"it: {', '.join(hidden)}", 160)
    fig.suptitle(f"{result.scenario}: {status} (expect {result.expect})\n{verdict}",
                 fontsize=9, x=LEFT, ha="left", y=1 - 0.08 / total_in, va="top")
    for ax in (ax_steps, ax_paths):
        ax.tick_params(labelbottom=False)
    ax_io.set_xlabel("seconds since scenario start")
    return fig


def _t_end(result: ScenarioResult) -> float:
    ends = [s.end for s in result.steps] + [p[0] for p in result.iops]
    ends += [e.t for e in result.events]
    return max(ends or [1.0]) * 1.02 + 0.5


BOOT_SHARE = 0.4
"""A guest boot longer than this share of the run is cut from the time axis: what the
scenario is about happens after it."""


def _t_start(steps: list[StepRecord], t_end: float) -> float:
    boots = [s for s in steps if s.name.startswith("boot guest")]
    if not boots:
        return 0.0
    boot = max(boots, key=lambda s: s.end)
    if boot.end - boot.start < BOOT_SHARE * t_end:
        return 0.0
    return max(0.0, boot.end - 0.05 * (t_end - boot.end) - 0.5)


def _label(step: StepRecord) -> str:
    return f"{step.name} ({step.end - step.start:.1f}s)"


def _text_width_s(text: str, span: float) -> float:
    """How many seconds of the time axis ``text`` covers at LABEL_PT (measured with the
    font, so lanes are assigned before anything is drawn)."""
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import TextToPath

    width_pt, _, _ = TextToPath().get_text_width_height_descent(
        text, FontProperties(size=LABEL_PT), ismath=False)
    axes_pt = WIDTH_IN * 72 * (RIGHT - LEFT)
    return width_pt / axes_pt * span


def _place_steps(steps: list[StepRecord], t_start: float,
                 t_end: float) -> tuple[list[_Placed], int]:
    """Greedy interval colouring: a step goes to the first lane free from its start on
    (its bar and its label both occupy the lane), so no two labels ever overlap."""
    lane_free: list[float] = []
    placed = []
    span = t_end - t_start
    gap = span * 0.006
    for step in sorted(steps, key=lambda s: s.start):
        width = _text_width_s(_label(step), span) + gap
        # a label starts inside the axis and never runs off its right end
        label_x = min(max(step.start, t_start), t_end - width)
        begin = min(step.start, label_x)
        end = max(step.end, label_x + width) + gap
        for lane, free in enumerate(lane_free):
            if free <= begin:
                lane_free[lane] = end
                break
        else:
            lane = len(lane_free)
            lane_free.append(end)
        placed.append(_Placed(step, lane, label_x))
    return placed, max(1, len(lane_free))


def _draw_steps(ax: Any, placed: list[_Placed], lanes: int) -> None:
    for p in placed:
        color = "tab:green" if p.step.ok else "tab:red"
        y = lanes - 1 - p.lane
        ax.plot([p.step.start, max(p.step.end, p.step.start)], [y, y], color=color,
                linewidth=4, solid_capstyle="butt", alpha=0.7)
        ax.plot([p.step.start], [y], marker="|", color=color, markersize=9)
        ax.text(p.label_x, y + 0.18, " " + _label(p.step), fontsize=LABEL_PT,
                color="black" if p.step.ok else "tab:red", va="bottom", ha="left",
                clip_on=False)
    ax.set_ylim(-0.6, lanes)
    ax.set_yticks([])
    ax.set_ylabel("steps", fontsize=8)
    ax.grid(axis="x", alpha=0.3)


def _path_names(result: ScenarioResult) -> list[str]:
    names: list[str] = []
    for step in result.steps:
        m = _ADD_PATH.match(step.name) or _PATH_STEP.match(step.name)
        if m and m.groups()[-1] not in names:
            names.append(m.groups()[-1])
    for ev in result.events:
        dev = ev.data.get("dev")
        if ev.name.startswith("PATH_") and isinstance(dev, str) and dev not in names:
            names.append(dev)
    return names


def _draw_paths(ax: Any, result: ScenarioResult, paths: list[str], t_end: float) -> None:
    """Up (green) / failed (red) per path, as the daemon reported it."""
    for row, name in enumerate(paths):
        y = len(paths) - 1 - row
        start = next((s.end for s in result.steps
                      if (m := _ADD_PATH.match(s.name)) and m.group(1) == name), 0.0)
        changes = sorted((e.t, e.name == "PATH_REINSTATED") for e in result.events
                         if e.name in ("PATH_FAILED", "PATH_REINSTATED")
                         and e.data.get("dev") == name)
        up, t = True, start
        for when, now_up in [*changes, (t_end, True)]:
            if when > t:
                ax.broken_barh([(t, when - t)], (y - 0.3, 0.6),
                               color="tab:green" if up else "tab:red", alpha=0.6)
            t, up = max(t, when), now_up
        for step in result.steps:
            m = _PATH_STEP.match(step.name)
            if m and m.group(2) == name and m.group(1) in ("kill", "pause", "partition"):
                ax.plot([step.start], [y], marker="x", color="black", markersize=7)
    ax.set_yticks(range(len(paths)), list(reversed(paths)), fontsize=8)
    ax.set_ylim(-0.6, max(len(paths), 1) - 0.4)
    ax.set_ylabel("paths", fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    if not paths:
        ax.text(0.01, 0.5, "no NBD paths in this scenario", transform=ax.transAxes,
                fontsize=8, va="center", color="gray")


def _draw_io(ax: Any, result: ScenarioResult) -> None:
    from matplotlib.lines import Line2D

    handles: list[Any] = []
    if result.iops:
        t = [p[0] for p in result.iops]
        handles += ax.plot(t, [p[1] for p in result.iops], label="guest read IOPS",
                           color="tab:blue")
        handles += ax.plot(t, [p[2] for p in result.iops], label="guest write IOPS",
                           color="tab:orange")
    else:
        ax.text(0.01, 0.5, "no fio IOPS log", transform=ax.transAxes, fontsize=8,
                color="gray")
    for step in result.steps:
        if not step.ok:
            ax.axvline(step.start, color="tab:red", linewidth=1, alpha=0.6)
    ax.set_ylim(bottom=0)
    ax.set_ylabel("guest I/O per second", fontsize=8)
    ax.grid(alpha=0.3)
    blank = Line2D([], [], linestyle="none")
    lines = [wrapped for line in counter_lines(result) for wrapped in _wrap(line)]
    handles += [blank] * len(lines)
    labels = [h.get_label() for h in handles[:len(handles) - len(lines)]] + lines
    ax.figure.legend(handles, labels, loc="upper left", bbox_to_anchor=(RIGHT + 0.01, 0.98),
                     fontsize=7.5, frameon=True, handlelength=1.5, title="guest I/O; "
                     "daemon counters (this run)", title_fontsize=8)


def counter_lines(result: ScenarioResult) -> list[str]:
    """The legend's text: each mapped device's non-zero core counters and per-target
    highlights, then the evidence obligations with what was observed."""
    lines = []
    for owner, stats in sorted(result.evidence.observed.items()):
        if owner.startswith("export:"):
            continue
        words = [f"{k} {stats[k]}" for k in _CORE if stats.get(k)]
        pieces = stats.get("pieces") or []
        if any(pieces):
            words.append("pieces " + "/".join(str(p) for p in pieces))
        lines.append(f"{owner}: " + (", ".join(words) or "no I/O"))
        for index, target in enumerate(stats.get("targets") or []):
            extra = _target_words(target)
            if extra:
                lines.append(f"  target {index}: {extra}")
    ev = result.evidence
    if ev.declared:
        lines.append("evidence: " + ("ok" if ev.ok else "SHORT (hollow)"))
        for owner, paths in ev.declared.items():
            for dotted, minimum in paths.items():
                seen = lookup(ev.observed.get(owner), dotted)
                mark = "SHORT" if shortfalls({owner: {dotted: minimum}}, ev.observed) else "ok"
                need = minimum if isinstance(minimum, str) else f">= {minimum}"
                lines.append(f"  {mark}: {owner} {dotted} = {seen} ({need})")
    return lines


LEGEND_CHARS = 62
"""Legend lines are wrapped at this width so the legend stays inside the picture."""


def _wrap(line: str) -> list[str]:
    indent = " " * (len(line) - len(line.lstrip()) + 4)
    return textwrap.wrap(line, LEGEND_CHARS, subsequent_indent=indent,
                         drop_whitespace=False, break_on_hyphens=False) or [line]


def _target_words(target: dict[str, Any]) -> str:
    words = []
    for key, value in target.items():
        if key == "paths" and isinstance(value, dict):
            words += [f"{p} ios {c.get('ios', 0)}" + (f" fail {c['failures']}"
                                                      if c.get("failures") else "")
                      for p, c in value.items()]
        elif isinstance(value, int) and value:
            words.append(f"{key} {value}")
    return ", ".join(words)
