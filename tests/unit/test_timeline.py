"""The timeline PNG is readable: step labels never overlap (stacked lanes) and stay
inside the picture, each path gets its lane, the legend carries the counters."""

from __future__ import annotations

import itertools
from pathlib import Path

import matplotlib.pyplot as plt

from qmp_scenarios.result import EventRecord, EvidenceRecord, ScenarioResult, StepRecord
from qmp_scenarios.timeline import build_figure, counter_lines, draw_timeline


def crowded_result() -> ScenarioResult:
    """Many short steps close together (what a suspend/load/resume sequence looks like)
    and a step ending at the very end."""
    result = ScenarioResult(scenario="crowded", expect="no-eio", passed=True, verdict="ok")
    t = 20.0
    for i in range(12):
        result.steps.append(StepRecord(f"step number {i} with a long-ish name", t, t + 0.05,
                                       True))
        t += 0.1
    result.steps.append(StepRecord("kill path p0", 21.0, 21.5, True))
    result.steps.append(StepRecord("collect guest kernel I/O errors", 40.0, 40.2, False))
    result.iops = [(20.0 + i, 10.0, 1000.0) for i in range(20)]
    result.events = [EventRecord(21.2, "PATH_FAILED", {"name": "mp", "dev": "p0"}),
                     EventRecord(30.0, "PATH_REINSTATED", {"name": "mp", "dev": "p0"}),
                     EventRecord(22.0, "PATH_FAILED", {"name": "mp", "dev": "p1"})]
    result.evidence = EvidenceRecord(
        declared={"mp": {"split": 1, "pushed-back": 1}},
        observed={"mp": {"ios": 900, "split": 4, "pieces": [500, 404], "pushed-back": 0,
                         "targets": [{"paths": {"p0": {"ios": 3, "failures": 1}},
                                      "queued": 2}, {}]}},
        ok=False, short=["mp pushed-back = 0, needs >= 1"])
    return result


def test_step_labels_never_overlap_and_stay_in_the_figure() -> None:
    fig = build_figure(crowded_result())
    try:
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
        boxes = [t.get_window_extent(renderer) for t in fig.axes[0].texts]
        assert len(boxes) == 14
        for a, b in itertools.combinations(boxes, 2):
            assert not a.overlaps(b), (a, b)
        width = fig.bbox.width
        assert all(box.x0 >= 0 and box.x1 <= width for box in boxes)
        assert [t.get_text() for t in fig.axes[1].get_yticklabels()] == ["p1", "p0"]
    finally:
        plt.close(fig)


def test_a_long_boot_is_cut_from_the_axis_and_named_in_the_title() -> None:
    result = crowded_result()
    result.steps.insert(0, StepRecord("boot guest", 0.5, 19.0, True))
    result.steps.insert(0, StepRecord("add NBD path p0", 0.0, 0.5, True))
    fig = build_figure(result)
    try:
        start, _ = fig.axes[0].get_xlim()
        assert 15 < start < 19
        assert "before it: add NBD path p0" in fig._suptitle.get_text()
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
        boxes = [t.get_window_extent(renderer) for t in fig.axes[0].texts]
        assert len(boxes) == 15  # the boot step is still drawn (it ends on the axis)
        for a, b in itertools.combinations(boxes, 2):
            assert not a.overlaps(b), (a, b)
        assert all(box.x0 >= 0 and box.x1 <= fig.bbox.width for box in boxes)
    finally:
        plt.close(fig)


def test_the_legend_carries_counters_and_the_evidence_verdict() -> None:
    lines = counter_lines(crowded_result())
    assert lines[0] == "mp: ios 900, split 4, pieces 500/404"
    assert lines[1] == "  target 0: p0 ios 3 fail 1, queued 2"
    assert "evidence: SHORT (hollow)" in lines
    assert "  SHORT: mp pushed-back = 0 (>= 1)" in lines
    assert "  ok: mp split = 4 (>= 1)" in lines


def test_draws_a_png(tmp_path: Path) -> None:
    draw_timeline(crowded_result(), tmp_path / "t.png")
    assert (tmp_path / "t.png").read_bytes()[:4] == b"\x89PNG"


def test_a_step_that_quotes_a_shell_command_still_draws(tmp_path: Path) -> None:
    """Step text is drawn as it is: "$(...)" in a failed guest command is not TeX (it
    once made the PNG, and with it the scenario's report, fail with a ParseException)."""
    result = ScenarioResult(scenario="x", expect="no-eio")
    result.steps = [StepRecord("wait until $(awk '{print $7}' /sys/block/vda/stat) is 8",
                               0.0, 1.0, False, "GuestError: while [ $(awk '{print $7}') ]")]
    draw_timeline(result, tmp_path / "t.png")
    assert (tmp_path / "t.png").read_bytes()[:4] == b"\x89PNG"
