"""multipath: table parsing, status INFO/TABLE, messages, priority groups, retries."""

from __future__ import annotations

import pytest

from backend.blockio import Op, Status
from backend.dm import StatusType, parse_table
from backend.dm.paths import PathTarget
from backend.errors import MessageError, TableError
from backend.targets.multipath import MultipathTarget

from .mpath_support import (
    Paths,
    Requests,
    async_test,
    events,
    make_md,
    mpath_line,
    mpaths,
    path_states,
    settle,
)

TWO_GROUPS = ("0 200 multipath 1 queue_if_no_path 0 2 2 "
              "round-robin 0 2 1 p0 1 p1 1 "
              "service-time 0 1 2 p2 1 50")


def sectors(paths: Paths, name: str) -> list[int]:
    return paths[name].sectors_written


# --- table -----------------------------------------------------------------------------


@pytest.mark.parametrize("text", [
    "0 200 multipath 0 0 1 1 round-robin 0 2 0 p0 p1",
    "0 200 multipath 1 queue_if_no_path 0 1 1 round-robin 0 1 1 p0 3",
    "0 200 multipath 3 queue_if_no_path no_path_retry 5 0 1 1 queue-length 0 1 1 p0 1",
    TWO_GROUPS,
    "0 200 multipath 2 no_path_retry 0 0 0 0",
])
def test_table_round_trips(text: str) -> None:
    paths = Paths("p0", "p1", "p2")
    first = parse_table(text, paths)
    table = first.status(StatusType.TABLE)
    again = parse_table(table, paths)
    assert again.status(StatusType.TABLE) == table
    assert again.status(StatusType.INFO) == first.status(StatusType.INFO)


def test_table_text_is_the_kernels() -> None:
    paths = Paths("p0", "p1", "p2")
    table = parse_table("0 200 multipath 0 0 1 1 round-robin 0 2 0 p0 p1\n", paths)
    assert table.status(StatusType.TABLE) == (
        "0 200 multipath 0 0 1 1 round-robin 0 2 1 p0 1 p1 1")
    table = parse_table(TWO_GROUPS, paths)
    assert table.status(StatusType.TABLE) == (
        "0 200 multipath 1 queue_if_no_path 0 2 2 round-robin 0 2 1 p0 1 p1 1 "
        "service-time 0 1 2 p2 1 50")


@pytest.mark.parametrize(("args", "printed"), [
    # as the guest kernel's dm-mpath prints them (the format oracle's multipath sequences)
    ("2 queue_mode bio 0 1 1 round-robin 0 1 1 p0 1",
     "3 retain_attached_hw_handler queue_mode bio 0 1 1 round-robin 0 1 1 p0 1"),
    ("3 queue_if_no_path queue_mode rq 0 1 1 round-robin 0 1 1 p0 1",
     "1 queue_if_no_path 0 1 1 round-robin 0 1 1 p0 1"),
    ("4 pg_init_retries 3 pg_init_delay_msecs 100 0 1 1 round-robin 0 1 1 p0 1",
     "4 pg_init_retries 3 pg_init_delay_msecs 100 0 1 1 round-robin 0 1 1 p0 1"),
    ("0 0 1 1 round-robin 0 1 1 p0 1000", "0 0 1 1 round-robin 0 1 1 p0 1"),
    ("0 0 1 1 round-robin 0 1 1 p0 0", "0 0 1 1 round-robin 0 1 1 p0 0"),
    ("0 0 1 1 round-robin 2 x y 1 1 p0 1", "0 0 1 1 round-robin 0 1 1 p0 1"),
    ("0 0 1 1 service-time 0 1 2 p0 7 20", "0 0 1 1 service-time 0 1 2 p0 1 20"),
    ("0 0 1 2 round-robin 0 1 1 p0 1", "0 0 1 1 round-robin 0 1 1 p0 1"),
])
def test_kernel_features_and_selector_args(args: str, printed: str) -> None:
    table = parse_table(f"0 200 multipath {args}", Paths("p0"))
    assert table.status(StatusType.TABLE) == f"0 200 multipath {printed}"


def test_queue_io_bit_is_set_until_the_first_path_choice() -> None:
    """multipath_status INFO's first feature word: MPATHF_QUEUE_IO, set at construction
    and cleared when the first I/O switches into a group."""
    table = parse_table("0 200 multipath 0 0 1 1 round-robin 0 1 1 p0 1", Paths("p0"))
    assert table.status(StatusType.INFO).startswith("0 200 multipath 2 1 0 ")
    target = table.targets[0]
    assert isinstance(target, MultipathTarget)
    assert target.groups.choose(4096) is not None
    assert table.status(StatusType.INFO).startswith("0 200 multipath 2 0 0 ")


@pytest.mark.parametrize(("args", "reason"), [
    ("1 bogus 0 1 1 round-robin 0 1 0 p0", "unrecognised multipath feature 'bogus'"),
    ("0 1 alua 1 1 round-robin 0 1 0 p0", "hardware handlers are not supported"),
    ("0 0 1 0 round-robin 0 1 0 p0", "invalid initial priority group 0 of 1"),
    ("0 0 1 1 fastest 0 1 0 p0", "unknown path selector type 'fastest'"),
    ("0 0 1 1 round-robin 0 0 0", "invalid number of paths in group 1: 0 is outside 1..1024"),
    ("0 0 1 1 round-robin 0 2 0 p0", "not enough arguments: expected device of path 2"),
    ("0 0 1 1 round-robin 0 1 0 nope", "device lookup failed: nope"),
    ("2 queue_mode fast 0 1 1 round-robin 0 1 0 p0", "unknown queue_mode 'fast'"),
    ("2 pg_init_retries 51 0 1 1 round-robin 0 1 0 p0", "pg_init_retries: 51 is outside 1..50"),
    ("0 0 1 1 service-time 0 1 2 p0 1 101", "relative_throughput: 101 is outside 0..100"),
    ("0 0 1 1 round-robin 0 1 0 p0 extra", "too many arguments: unexpected 'extra'"),
    ("0 0 2 1 round-robin 0 1 0 p0", "not enough arguments: expected path selector of group 2"),
])
def test_bad_tables_name_the_reason(args: str, reason: str) -> None:
    with pytest.raises(TableError) as err:
        parse_table(f"0 200 multipath {args}", Paths("p0"))
    assert err.value.line == 1
    assert reason in err.value.reason


def test_path_must_cover_the_target() -> None:
    with pytest.raises(TableError, match="too small"):
        parse_table("0 300 multipath 0 0 1 1 round-robin 0 1 0 p0", Paths("p0"))


# --- status -------------------------------------------------------------------------------


@async_test
async def test_info_status_tracks_groups_and_paths() -> None:
    paths = Paths("p0", "p1", "p2")
    md = make_md(TWO_GROUPS, paths)
    assert md.status() == ("0 200 multipath 2 1 0 0 2 2 "  # queue_io until the first I/O
                           "E 0 2 0 p0 A 0 p1 A 0 E 0 1 2 p2 A 0 0 50")
    r = Requests()
    r.submit(md, "w", Op.WRITE, 0, 1, b"x")
    assert md.status() == ("0 200 multipath 2 0 0 0 2 2 "
                           "E 0 2 0 p0 A 0 p1 A 0 A 0 1 2 p2 A 0 0 50")
    md.message(0, ["fail_path", "p2"])
    md.message(0, ["disable_group", "1"])
    r.submit(md, "w2", Op.WRITE, 0, 1, b"x")
    assert md.status() == ("0 200 multipath 2 0 0 0 2 1 "
                           "D 0 2 0 p0 A 0 p1 A 0 E 0 1 2 p2 F 1 0 50")


# --- messages --------------------------------------------------------------------------------


@async_test
async def test_messages_refused_with_ebusy_while_suspended() -> None:
    md = make_md(TWO_GROUPS, Paths("p0", "p1", "p2"))
    await md.suspend()
    for argv in (["fail_path", "p0"], ["reinstate_path", "p0"], ["queue_if_no_path"],
                 ["fail_if_no_path"], ["switch_group", "1"], ["enable_group", "1"],
                 ["disable_group", "1"]):
        with pytest.raises(MessageError) as err:
            md.message(0, argv)
        assert err.value.errno is Status.EBUSY
    await md.resume()
    assert md.message(0, ["fail_path", "p0"]) == ""


@async_test
async def test_path_report_protocol_is_what_the_checker_sees_and_uses() -> None:
    md = make_md(TWO_GROUPS, Paths("p0", "p1", "p2"))
    target = mpaths(md)[0]
    assert isinstance(target, PathTarget)
    seen = events(md)
    assert [(r.name, r.active) for r in target.path_reports()] == [
        ("p0", True), ("p1", True), ("p2", True)]
    assert target.fail_path("p1") is True
    assert target.fail_path("p1") is False  # already failed: no change, no event
    assert [r.name for r in target.path_reports() if not r.active] == ["p1"]
    assert target.reinstate_path("p1") is True
    assert seen == ["path failed: p1 (2 valid)", "path reinstated: p1 (3 valid)"]
    with pytest.raises(MessageError) as err:
        target.fail_path("p9")
    assert err.value.errno is Status.EINVAL
    await md.suspend()
    for verdict in (lambda: target.fail_path("p0"), lambda: target.reinstate_path("p0"),
                    lambda: target.set_queue_if_no_path(False)):
        with pytest.raises(MessageError) as err:
            verdict()
        assert err.value.errno is Status.EBUSY


@pytest.mark.parametrize("argv", [
    ["fail_path"], ["fail_path", "p9"], ["switch_group", "3"], ["switch_group", "0"],
    ["enable_group", "x"], ["frobnicate", "1"], ["queue_if_no_path", "now"],
])
def test_bad_messages_are_einval(argv: list[str]) -> None:
    md = make_md(TWO_GROUPS, Paths("p0", "p1", "p2"))
    with pytest.raises(MessageError) as err:
        md.message(0, argv)
    assert err.value.errno is Status.EINVAL


@async_test
async def test_fail_and_reinstate_raise_table_events_once() -> None:
    md = make_md(TWO_GROUPS, Paths("p0", "p1", "p2"))
    seen = events(md)
    md.message(0, ["fail_path", "p1"])
    md.message(0, ["FAIL_PATH", "p1"])  # already failed: nothing happens
    md.message(0, ["reinstate_path", "p1"])
    md.message(0, ["reinstate_path", "p1"])
    assert seen == ["path failed: p1 (2 valid)", "path reinstated: p1 (3 valid)"]
    assert md.event_nr == 2
    assert mpaths(md)[0].paths[1].fail_count == 1


@async_test
async def test_fail_if_no_path_fails_queued_io_and_queue_if_no_path_keeps_it() -> None:
    paths = Paths("p0", "p1")
    md = make_md(mpath_line(0, 200, "p0", "p1"), paths)
    paths.kill()
    r = Requests()
    w1 = r.submit(md, "w1", Op.WRITE, 1, 1, b"1")
    await settle()
    assert not w1.done
    md.message(0, ["fail_if_no_path"])
    await settle()
    assert r.order == [("w1", Status.EIO)]
    md.message(0, ["queue_if_no_path"])
    w2 = r.submit(md, "w2", Op.WRITE, 2, 1, b"2")
    await settle()
    assert not w2.done and mpaths(md)[0].queued == 1


# --- I/O, retries and priority groups ---------------------------------------------------------


@async_test
async def test_failed_io_is_retried_on_the_other_path() -> None:
    paths = Paths("p0", "p1")
    md = make_md(mpath_line(0, 200, "p0", "p1", features="0"), paths)
    paths.kill("p0")
    r = Requests()
    w = r.submit(md, "w", Op.WRITE, 7, 2, b"r")
    await settle()
    assert r.order == [("w", Status.OK)]
    assert (sectors(paths, "p0"), sectors(paths, "p1")) == ([7], [7])
    assert path_states(mpaths(md)[0]) == {"p0": "F", "p1": "A"}
    assert paths.disk.read(7 * 512, 1024) == b"r" * 1024
    assert w.status is Status.OK


@pytest.mark.parametrize("error", [Status.EOPNOTSUPP, Status.ENOSPC, Status.EINVAL])
@async_test
async def test_target_errors_do_not_fail_the_path(error: Status) -> None:
    paths = Paths("p0", "p1")
    md = make_md(mpath_line(0, 200, "p0", "p1"), paths)
    paths["p0"].error = error
    w = Requests().submit(md, "w", Op.WRITE, 1, 1, b"x")
    assert w.status is error
    assert path_states(mpaths(md)[0]) == {"p0": "A", "p1": "A"}


@async_test
async def test_flush_and_discard_go_through_a_path_and_fail_over() -> None:
    paths = Paths("p0", "p1")
    md = make_md(mpath_line(0, 200, "p0", "p1"), paths)
    paths.kill("p0")
    r = Requests()
    f = r.submit(md, "flush", Op.FLUSH)
    d = r.submit(md, "discard", Op.DISCARD, 8, 8)
    await settle()
    assert (f.status, d.status) == (Status.OK, Status.OK)
    # the flush failed on p0 and was retried after the discard had gone straight to p1
    assert [op for op, _ in paths["p0"].log] == [Op.FLUSH]
    assert [op for op, _ in paths["p1"].log] == [Op.DISCARD, Op.FLUSH]


@async_test
async def test_initial_group_then_failover_to_next_group_then_back() -> None:
    paths = Paths("p0", "p1", "p2")
    md = make_md(TWO_GROUPS, paths)  # initial group 2 (p2)
    r = Requests()
    r.submit(md, "a", Op.WRITE, 1, 1, b"a")
    assert sectors(paths, "p2") == [1]
    paths.kill("p2")
    r.submit(md, "b", Op.WRITE, 2, 1, b"b")
    await settle()
    r.submit(md, "c", Op.WRITE, 3, 1, b"c")
    assert r.order == [("a", Status.OK), ("b", Status.OK), ("c", Status.OK)]
    assert (sectors(paths, "p0"), sectors(paths, "p1")) == ([2], [3])
    # p2 back and reinstated: group 1 stays current until told to switch
    paths["p2"].restart()
    await paths["p2"].connect()
    md.message(0, ["reinstate_path", "p2"])
    r.submit(md, "d", Op.WRITE, 4, 1, b"d")
    assert sectors(paths, "p0") == [2, 4]
    md.message(0, ["switch_group", "2"])
    r.submit(md, "e", Op.WRITE, 5, 1, b"e")
    assert sectors(paths, "p2") == [1, 2, 5]


@async_test
async def test_disabled_group_is_a_last_resort() -> None:
    paths = Paths("p0", "p1", "p2")
    md = make_md(TWO_GROUPS, paths)
    seen = events(md)
    r = Requests()
    r.submit(md, "first", Op.WRITE, 0, 1, b"f")  # the initial group (2) becomes current
    md.message(0, ["disable_group", "2"])
    r.submit(md, "a", Op.WRITE, 1, 1, b"a")
    assert sectors(paths, "p2") == [0] and sectors(paths, "p0") == [1]
    md.message(0, ["fail_path", "p0"])
    md.message(0, ["fail_path", "p1"])
    r.submit(md, "b", Op.WRITE, 2, 1, b"b")
    assert sectors(paths, "p2") == [0, 2]  # bypassed, but the only group with a path
    md.message(0, ["enable_group", "2"])
    assert seen[0] == "priority group 2: disable_group"
    assert seen[-1] == "priority group 2: enable_group"


@async_test
async def test_reinstate_kicks_queued_io_in_order() -> None:
    paths = Paths("p0", "p1")
    md = make_md(mpath_line(0, 200, "p0", "p1"), paths)
    paths.kill()
    r = Requests()
    for i in range(4):
        r.submit(md, f"w{i}", Op.WRITE, i, 1, bytes([65 + i]))
    await settle()
    assert mpaths(md)[0].queued == 4 and r.order == []
    paths["p1"].restart()
    await paths["p1"].connect()
    md.message(0, ["reinstate_path", "p1"])
    await settle()
    assert r.order == [(f"w{i}", Status.OK) for i in range(4)]
    assert sectors(paths, "p1")[-4:] == [0, 1, 2, 3]
