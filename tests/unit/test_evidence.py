"""Evidence obligations: counter lookup, sums across a daemon restart, and the hollow
judgement (a scenario whose declared counters are short fails, whatever the guest saw)."""

from __future__ import annotations

from typing import Any

import pytest

from qmp_scenarios.evidence import (
    add_counters,
    check_declaration,
    counters_from,
    describe,
    lookup,
    shortfalls,
)
from qmp_scenarios.result import FioEvidence, ScenarioResult, StepRecord
from qmp_scenarios.runner import judge, judge_evidence

STATS: dict[str, Any] = {
    "ios": 40, "split": 3, "pieces": [20, 23], "requeued": 0, "pushed-back": 2,
    "deferred-reissued": 2, "flush-copies": 4, "eio": 0,
    "targets": [{"paths": {"p0": {"ios": 20, "failures": 1}}, "queued": 2}, {}],
}


def guest_passed(expect: str = "no-eio") -> ScenarioResult:
    """A result whose guest verdict alone passes."""
    result = ScenarioResult(scenario="s", expect=expect)
    result.steps.append(StepRecord("wait for fio", 0.0, 1.0, True))
    if expect == "no-eio":
        result.guest.fio = FioEvidence(exit_code=0, errors=0, verify="passed")
    else:
        result.guest.fio = FioEvidence(exit_code=5, errors=1, verify="not-run")
        result.guest.io_errors = ["I/O error, dev vda, sector 8"]
    judge(result)
    assert result.passed
    return result


def test_lookup_walks_dicts_and_list_indexes() -> None:
    assert lookup(STATS, "split") == 3
    assert lookup(STATS, "pieces.1") == 23
    assert lookup(STATS, "targets.0.paths.p0.failures") == 1
    assert lookup(STATS, "pieces.2") is None
    assert lookup(STATS, "targets.0.paths") is None  # not a number
    assert lookup(STATS, "nothing") is None


def test_shortfalls_name_the_counter_its_value_and_the_minimum() -> None:
    observed = {"mp": STATS}
    assert shortfalls({"mp": {"split": 1, "pieces.1": 1}}, observed) == []
    assert shortfalls({"mp": {"requeued": 1, "pieces.5": 1}, "vol": {"ios": 1}}, observed) == [
        "mp requeued = 0, needs >= 1",
        "mp pieces.5 absent, needs >= 1",
        "vol ios absent (vol not found), needs >= 1",
    ]


def test_a_guest_pass_with_short_evidence_is_hollow() -> None:
    result = guest_passed()
    judge_evidence(result, {"mp": {"split": 1, "requeued": 1}}, {"mp": STATS})
    assert not result.passed
    assert result.verdict.startswith("hollow: mp requeued = 0, needs >= 1")
    assert not result.evidence.ok
    assert result.evidence.observed == {"mp": STATS}
    assert result.to_json()["evidence"]["short"] == ["mp requeued = 0, needs >= 1"]


def test_an_eio_sibling_is_hollow_too_when_its_rule_did_not_run() -> None:
    result = guest_passed("eio")
    judge_evidence(result, {"mp": {"eio": 1}}, {"mp": STATS})
    assert not result.passed and result.verdict.startswith("hollow: mp eio = 0")


def test_evidence_met_keeps_the_guest_verdict() -> None:
    result = guest_passed()
    verdict = result.verdict
    judge_evidence(result, {"mp": {"split": 3, "pieces.0": 1, "pushed-back": 2}},
                   {"mp": STATS})
    assert result.passed and result.verdict == verdict and result.evidence.ok


def test_no_declared_evidence_is_hollow() -> None:
    result = guest_passed()
    judge_evidence(result, {}, {"mp": STATS})
    assert not result.passed and result.verdict.startswith("hollow: no evidence declared")


def test_a_failed_step_stays_the_verdict_but_short_evidence_still_fails() -> None:
    result = guest_passed()
    result.steps.append(StepRecord("kill path p0", 1.0, 2.0, False, "boom"))
    judge(result)
    judge_evidence(result, {"mp": {"requeued": 1}}, {"mp": STATS})
    assert not result.passed and result.verdict == "step failed: kill path p0"
    assert result.evidence.short == ["mp requeued = 0, needs >= 1"]


def test_counters_banked_before_a_restart_add_to_those_after() -> None:
    banked: dict[str, Any] = {}
    add_counters(banked, {"mp": {"ios": 5, "pieces": [1, 2], "state": "ACTIVE"},
                          "export:d0": {"resubmitted": 0, "id": "d0"}})
    add_counters(banked, {"mp": {"ios": 3, "pieces": [4], "state": "SUSPENDED"},
                          "export:d0": {"resubmitted": 2, "id": "d0"}})
    assert banked == {"mp": {"ios": 8, "pieces": [5, 2], "state": "SUSPENDED"},
                      "export:d0": {"resubmitted": 2, "id": "d0"}}


def test_counters_from_query_replies() -> None:
    observed = counters_from([{"name": "mp", "stats": {"ios": 1}}],
                             [{"id": "d0", "dm": "mp", "resubmitted": 0}])
    assert observed == {"mp": {"ios": 1}, "export:d0": {"id": "d0", "dm": "mp",
                                                         "resubmitted": 0}}


@pytest.mark.parametrize(("declared", "reason"), [
    ({"mp": {}}, "at least one counter"),
    ({"mp": {"split": 0}}, "minimum must be an int >= 1"),
    ({"mp": {"pieces..1": 1}}, "bad counter path"),
    ({"mp": {"split": True}}, "minimum must be an int >= 1"),
    ({"vol": {"flush-copies": "2*flushes"}}, "a relation reads '=K\\*PATH'"),
    ({"vol": {"flush-copies": "=0*flushes"}}, "a relation reads"),
    ({"vol": {"flush-copies": "=2*"}}, "a relation reads"),
])
def test_a_malformed_declaration_is_refused(declared: Any, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        check_declaration(declared)


def test_a_relation_holds_only_exactly_and_with_a_nonzero_base() -> None:
    """seed 004's claim "every flush went to both stripes": flush-copies = 2 x flushes."""
    declared = {"vol": {"flush-copies": "=2*flushes"}}
    check_declaration(declared)
    assert shortfalls(declared, {"vol": {"flushes": 7, "flush-copies": 14}}) == []
    assert shortfalls(declared, {"vol": {"flushes": 7, "flush-copies": 13}}) == [
        "vol flush-copies = 13, needs 2 x flushes = 14"]
    assert shortfalls(declared, {"vol": {"flushes": 0, "flush-copies": 0}}) == [
        "vol flushes = 0, needs >= 1 (for flush-copies = 2 x flushes)"]
    assert shortfalls(declared, {}) == [
        "vol flush-copies or flushes absent, needs flush-copies = 2 x flushes"]
    assert describe(declared) == "vol: flush-copies=2*flushes"
