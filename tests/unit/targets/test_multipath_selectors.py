"""Path selectors: which path each I/O gets, and how failures change that."""

from __future__ import annotations

import pytest

from backend.dm import StatusType
from backend.errors import TableError
from backend.targets.path_selectors import (
    QueueLength,
    RoundRobin,
    ServiceTime,
    make_selector,
)


def picks(selector: RoundRobin[str] | QueueLength[str] | ServiceTime[str], n: int,
          nr_bytes: int = 4096) -> list[str | None]:
    return [selector.select_path(nr_bytes) for _ in range(n)]


def test_round_robin_takes_turns_one_io_each_whatever_the_repeat_count() -> None:
    """The kernel's selectors: "repeat_count > 1 is deprecated, using 1 instead"."""
    rr: RoundRobin[str] = RoundRobin([])
    rr.add_path("a", ["2"])
    rr.add_path("b", ["1"])
    rr.add_path("c", [])
    assert picks(rr, 6) == ["a", "b", "c", "a", "b", "c"]
    assert rr.path_status("a", StatusType.TABLE) == "1"


def test_round_robin_skips_failed_and_returns_reinstated_paths() -> None:
    rr: RoundRobin[str] = RoundRobin([])
    for p in "abc":
        rr.add_path(p, [])
    rr.fail_path("b")
    assert picks(rr, 4) == ["a", "c", "a", "c"]
    rr.fail_path("a")
    rr.fail_path("c")
    assert rr.select_path(512) is None
    rr.reinstate_path("b")
    assert picks(rr, 2) == ["b", "b"]


def test_round_robin_leaves_a_failed_path() -> None:
    rr: RoundRobin[str] = RoundRobin([])
    rr.add_path("a", ["5"])
    rr.add_path("b", ["5"])
    assert picks(rr, 1) == ["a"]
    rr.fail_path("a")
    assert picks(rr, 2) == ["b", "b"]


def test_queue_length_picks_the_least_busy_path() -> None:
    ql: QueueLength[str] = QueueLength([])
    for p in "ab":
        ql.add_path(p, [])
    first = ql.select_path(512)
    assert first == "a"
    ql.start_io("a", 512)
    assert picks(ql, 2) == ["b", "b"]  # a is busy, b idle
    ql.start_io("b", 512)
    ql.start_io("b", 512)
    assert ql.select_path(512) == "a"
    ql.end_io("b", 512)
    ql.end_io("b", 512)
    assert ql.path_status("a", StatusType.INFO) == "1"
    assert ql.path_status("a", StatusType.TABLE) == "1"


def test_service_time_weighs_load_by_throughput() -> None:
    st: ServiceTime[str] = ServiceTime([])
    st.add_path("slow", ["1", "10"])
    st.add_path("fast", ["1", "30"])
    assert st.select_path(4096) == "fast"  # same load: higher throughput
    st.start_io("fast", 8192)
    # (8192+4096)/30 < (0+4096)/10
    assert st.select_path(4096) == "fast"
    st.start_io("fast", 8192)
    # (16384+4096)/30 > 4096/10
    assert st.select_path(4096) == "slow"
    assert st.path_status("fast", StatusType.INFO) == "16384 30"
    assert st.path_status("fast", StatusType.TABLE) == "1 30"


def test_service_time_uses_zero_throughput_paths_only_as_last_resort() -> None:
    st: ServiceTime[str] = ServiceTime([])
    st.add_path("standby", ["1", "0"])
    st.add_path("main", ["1", "1"])
    st.start_io("main", 1 << 30)
    assert st.select_path(512) == "main"
    st.fail_path("main")
    assert st.select_path(512) == "standby"


def test_service_time_same_throughput_prefers_less_loaded() -> None:
    st: ServiceTime[str] = ServiceTime([])
    for p in "ab":
        st.add_path(p, [])
    st.start_io("a", 4096)
    assert st.select_path(512) == "b"


@pytest.mark.parametrize(("name", "sel_args", "path_args", "reason"), [
    ("round-robin", [], ["1", "2"], "incorrect number of path arguments"),
    ("queue-length", [], ["x"], "invalid queue-length repeat count"),
    ("service-time", [], ["1", "2", "3"], "incorrect number of path arguments"),
    ("shortest", [], [], "unknown path selector type"),
])
def test_bad_selector_arguments(name: str, sel_args: list[str], path_args: list[str],
                                reason: str) -> None:
    with pytest.raises(TableError, match=reason):
        make_selector(name, sel_args).add_path("p", path_args)
