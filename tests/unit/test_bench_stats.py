"""make bench's bookkeeping: what enters a median, what fails the bench, the dm column."""

from __future__ import annotations

import json

from qmp_scenarios.bench_stats import (
    PAIRED,
    Sample,
    dm_cost,
    dm_pairs,
    incidents,
    medians,
    table,
    to_json,
    vudm_runs_failed,
)


def ok(backend: str, workload: str, rep: int, iops: float, cpu_s: float) -> Sample:
    return Sample(backend, workload, rep, iops=iops, ios=1000, cpu_s=cpu_s)


SAMPLES = [
    ok("vudm", "4k-randread-qd32", 0, 100.0, 0.020),
    ok("vudm", "4k-randread-qd32", 1, 300.0, 0.030),
    ok("vudm-transport", "4k-randread-qd32", 0, 200.0, 0.018),
    ok("qsd-native", "4k-randread-qd32", 1, 250.0, 0.025),
    Sample("qsd-native", "4k-randread-qd32", 0, status="hung", error="fio did not finish",
           evidence={"virtqueue": {"posted_not_returned": 32}}),
    Sample("qsd-native", "4k-randread-qd1", 0, status="skipped", error="after a hang"),
]


def test_medians_use_finished_runs_only() -> None:
    med = medians(SAMPLES)
    assert med["vudm"]["4k-randread-qd32"]["iops"] == 200.0
    assert med["vudm"]["4k-randread-qd32"]["cpu_us_per_io"] == 25.0
    assert med["qsd-native"]["4k-randread-qd32"]["runs"] == 1.0
    assert "4k-randread-qd1" not in med.get("qsd-native", {})


def test_dm_cost_is_the_median_of_same_round_pairs() -> None:
    """Each difference is vudm-paired minus vudm-transport of one round (one guest);
    a round where either half did not finish gives no pair, and vudm's own fresh-guest
    runs never enter it."""
    wl = "4k-randread-qd32"
    pairs = [ok("vudm", wl, 0, 100.0, 0.090),  # a fresh guest of its own: not a half
             ok(PAIRED, wl, 0, 100.0, 0.021), ok("vudm-transport", wl, 0, 100.0, 0.018),
             ok(PAIRED, wl, 1, 100.0, 0.040), ok("vudm-transport", wl, 1, 100.0, 0.019),
             ok(PAIRED, wl, 2, 100.0, 0.022), ok("vudm-transport", wl, 2, 100.0, 0.020),
             ok(PAIRED, wl, 3, 100.0, 0.022),
             Sample("vudm-transport", wl, 3, status="hung")]
    assert [round(d, 6) for d in dm_pairs(pairs)[wl]] == [3.0, 21.0, 2.0]
    assert round(dm_cost(pairs)[wl], 6) == 3.0
    assert dm_cost(SAMPLES) == {}  # no vudm-paired run: no dm figure, not vudm - transport
    assert "minus vudm-transport" in table(medians(pairs), [PAIRED, "vudm-transport"],
                                           dm=dm_cost(pairs))


def test_a_qsd_hang_is_reported_but_does_not_fail_the_bench() -> None:
    assert vudm_runs_failed(SAMPLES) == []
    assert "HUNG" in incidents(SAMPLES) and "SKIPPED" in incidents(SAMPLES)
    doc = json.loads(json.dumps(to_json(SAMPLES, ["vudm", "vudm-transport", "qsd-native"], {})))
    assert doc["hung"] == [{"backend": "qsd-native", "workload": "4k-randread-qd32",
                            "round": 1, "error": "fio did not finish"}]
    hung = [s for s in doc["samples"] if s["status"] == "hung"]
    assert hung[0]["evidence"]["virtqueue"]["posted_not_returned"] == 32
    assert "vs qsd-native" in table(medians(SAMPLES), ["vudm", "vudm-transport", "qsd-native"])


def test_a_vudm_hang_or_failure_fails_the_bench() -> None:
    for backend in ("vudm", PAIRED, "vudm-transport"):
        for status in ("hung", "failed", "skipped"):
            bad = Sample(backend, "1m-read-qd4", 2, status=status)  # type: ignore[arg-type]
            assert vudm_runs_failed([*SAMPLES, bad]) == [bad]
