"""Table parsing: whole-table rejection naming line and reason; registry rules."""

from __future__ import annotations

import pytest

from backend.dm import StatusType, Target, parse_table, register
from backend.dm.args import ArgReader
from backend.dm.registry import lookup, unregister
from backend.errors import DuplicateTargetError, TableError

from .support import CALLS, Devices, HoldTarget


def devs() -> Devices:
    return Devices(a=1000, b=1000)


def reject(text: str) -> TableError:
    with pytest.raises(TableError) as err:
        parse_table(text, devs())
    return err.value


def test_comments_and_blank_lines_ignored() -> None:
    t = parse_table("# a comment\n\n0 10 zero\n   \n  # indented comment\n10 5 error\n", devs())
    assert t.status(StatusType.TABLE) == "0 10 zero\n10 5 error"
    assert t.size_sectors == 15


def test_table_status_round_trips() -> None:
    text = ("0 100 linear a 0\n100 64 striped 2 8 a 200 b 0\n164 10 zero\n174 10 error\n"
            "184 10 test-hold b 500")
    t = parse_table(text, devs())
    assert t.status(StatusType.TABLE) == text
    again = parse_table(t.status(StatusType.TABLE), devs())
    assert again.status(StatusType.TABLE) == text


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ("0 10 zero\n20 10 zero", 2, "gap in table"),
        ("5 10 zero", 1, "gap in table"),
        ("0 10 zero\n5 10 zero", 2, "overlaps"),
        ("0 10 zero\n10 0 zero", 2, "invalid length"),
        ("0 10 zero\n10 x zero", 2, "invalid length"),
        ("0 10 zero\n# c\n10 10 nosuch", 3, "unknown target type 'nosuch'"),
        ("0 10", 1, "expected <start> <length> <type>"),
        ("0 10 linear nowhere 0", 1, "device lookup failed: nowhere"),
        ("0 10 linear a", 1, "not enough arguments: expected <offset>"),
        ("0 10 linear a 0 extra", 1, "too many arguments"),
        ("0 10 linear a 995", 1, "too small"),
        ("0 10 zero junk", 1, "no arguments"),
        ("0 10 striped 3 2 a 0 b 0 a 10", 1, "not divisible by 3 stripes"),
        ("0 12 striped 2 4 a 0 b 0", 1, "not divisible by chunk size 4"),
        ("0 16 striped 2 4 a 0", 1, "need 4 <dev> <offset> arguments"),
        ("0 16 striped 0 4", 1, "invalid <#stripes>"),
        ("", 0, "no targets"),
        ("# only a comment", 0, "no targets"),
    ],
)
def test_bad_table_rejected_naming_line_and_reason(text: str, line: int, reason: str) -> None:
    err = reject(text)
    assert err.line == line
    assert reason in err.reason


def test_constructed_targets_destroyed_when_a_later_line_fails() -> None:
    CALLS.clear()
    reject("0 10 test-hold a 0\n10 10 test-hold b 0\n20 10 linear nowhere 0")
    assert CALLS == ["dtr@10", "dtr@0"]


def test_ctr_bug_is_a_table_error_naming_the_line() -> None:
    class Broken(Target):
        def ctr(self, args: list[str]) -> None:
            raise RuntimeError("oops")

        def map(self, clone):  # type: ignore[no-untyped-def]
            raise AssertionError

        def status(self, kind: StatusType) -> str:
            return ""

    register("test-broken")(Broken)
    try:
        err = reject("0 10 zero\n10 10 test-broken")
        assert err.line == 2 and "oops" in err.reason
    finally:
        unregister("test-broken")


def test_duplicate_registration_is_an_error() -> None:
    with pytest.raises(DuplicateTargetError):
        register("linear")(HoldTarget)
    assert lookup("linear").__name__ == "LinearTarget"


def test_unknown_type_lookup_is_table_error() -> None:
    with pytest.raises(TableError):
        lookup("nosuch")


def test_arg_reader_groups() -> None:
    reader = ArgReader(["2", "queue_if_no_path", "no_path_retry", "0"])
    assert reader.next_group("feature arguments") == ["queue_if_no_path", "no_path_retry"]
    assert reader.next_uint("hw args") == 0
    reader.finish()
    with pytest.raises(TableError, match="3 features announced, 1 left"):
        ArgReader(["3", "x"]).next_group("features")
