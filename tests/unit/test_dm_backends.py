"""The kernel oracle's translations, without a guest: path names to the guest's device
numbers and back (whole words only), and a path's A/F read from a status line."""

from __future__ import annotations

from typing import Any

from qmp_scenarios.dm_backends import _path_state, _swap_words


def test_path_names_become_device_numbers_and_back() -> None:
    numbers = {"p0": "252:16", "p1": "252:32", "p10": "252:48"}
    table = "0 8 multipath 0 0 1 1 round-robin 0 3 1 p0 1 p1 1 p10 1"
    kernel = _swap_words(table, numbers)
    assert kernel == "0 8 multipath 0 0 1 1 round-robin 0 3 1 252:16 1 252:32 1 252:48 1"
    assert _swap_words(kernel, {v: k for k, v in numbers.items()}) == table
    assert _swap_words("reinstate_path p0", numbers) == "reinstate_path 252:16"
    assert _swap_words("xp0 p0x", numbers) == "xp0 p0x"


def test_path_state_reads_the_word_after_the_path() -> None:
    status = ["0 8 multipath 2 0 0 0 1 1 E 0 2 0 252:16 F 1 252:32 A 0"]
    assert _path_state(status, "252:16", "p0") == "F"
    assert _path_state(status, "252:32") == "A"
    assert _path_state(status, "252:48") is None



def test_scenario_diff_compares_group_states_as_a_or_e_versus_d() -> None:
    from qmp_scenarios.oracle.scenario_diff import group_states
    line = "0 8 multipath 2 1 0 0 2 2 D 0 2 0 a A 0 b F 1 E 0 1 2 c A 0 0 20"
    assert group_states(line) == ("0 8 multipath 2 1 0 0 2 2 D 0 2 0 a A 0 b F 1 "
                                  "A|E 0 1 2 c A 0 0 20")
    assert group_states("0 8 linear p0 0") == "0 8 linear p0 0"


def test_multipath_lines_that_are_not_alone_become_devices_of_their_own() -> None:
    """The kernel refuses dm-mpath beside other targets: the oracle stacks each distinct
    multipath line as a device covering sectors 0..its end, under a linear top."""
    from qmp_scenarios.dm_backends import split_stack
    mp_a = "multipath 0 0 1 1 round-robin 0 1 1 a0 1"
    mp_b = "multipath 0 0 1 1 round-robin 0 1 1 b0 1"
    table = f"0 8 {mp_a}\n8 8 linear img 8\n16 8 {mp_a}\n24 8 {mp_b}"
    stack = split_stack("mp", table)
    assert stack is not None
    assert stack.lowers == {"mp.mp0": f"0 24 {mp_a}", "mp.mp1": f"0 32 {mp_b}"}
    assert stack.top.splitlines() == ["0 8 linear mp.mp0 0", "8 8 linear img 8",
                                      "16 8 linear mp.mp0 16", "24 8 linear mp.mp1 24"]
    assert not stack.top_holds_io
    assert stack.lower_at(17) == "mp.mp0" and stack.lower_at(9) is None
    assert split_stack("mp", f"0 8 {mp_a}") is None
    assert split_stack("mp", "0 8 linear a 0\n8 8 linear b 0") is None
    mixed = split_stack("mp", f"0 8 {mp_a}\n8 8 mirror core 2 1024 nosync 2 m0 0 m1 0 1 "
                              "handle_errors")
    assert mixed is not None and mixed.top_holds_io


def test_a_stacked_device_is_shown_as_the_table_the_scenario_wrote() -> None:
    from qmp_scenarios.dm_backends import DmLines, unstack
    top = DmLines(["0 8 linear mp.mp0 0", "8 8 linear img 8"], ["0 8 linear", "8 8 linear"],
                  1)
    low = DmLines(["0 16 multipath 0 0 1 1 round-robin 0 1 1 a0 1"],
                  ["0 16 multipath 2 0 0 0 1 1 A 0 1 0 a0 F 1"], 2)
    shown = unstack(top, {"mp.mp0": low})
    assert shown.table == ["0 8 multipath 0 0 1 1 round-robin 0 1 1 a0 1", "8 8 linear img 8"]
    assert shown.status == ["0 8 multipath 2 0 0 0 1 1 A 0 1 0 a0 F 1", "8 8 linear"]
    assert shown.event_nr == 3


def test_mirror_event_reasons_are_read_from_the_kernel_status() -> None:
    from qmp_scenarios.dm_backends import DmLines, reason_seen
    disk_log = DmLines([], ["0 8 mirror 2 m0 m1 16/16 1 AA 3 disk lg D"], 2)
    assert reason_seen("mirror log device lg failed (write)", disk_log, 5)
    assert not reason_seen("mirror leg m1 failed (write error)", disk_log, 5)
    leg = DmLines([], ["0 8 mirror 2 m0 m1 16/16 1 AD 1 core"], 2)
    assert reason_seen("mirror leg m1 failed (write error)", leg, 5)
    assert not reason_seen("mirror leg m0 failed (write error)", leg, 5)
    assert reason_seen("something else", leg, 1) and not reason_seen("something else", leg, 2)


def test_documented_scenario_rows_name_real_scenarios_and_mark_only_their_values() -> None:
    """docs/kernel-differences.md's scenario entries parse, name registered scenarios,
    and excuse a row only when both values are exactly the documented ones."""
    from types import SimpleNamespace

    from qmp_scenarios.catalog import all_scenarios
    from qmp_scenarios.oracle.differences import DOC, documented_rows
    from qmp_scenarios.oracle.scenario_diff import compare
    rows = documented_rows(DOC.read_text())
    assert rows, "the scenario differences section is gone"
    names = {s.name for s in all_scenarios()}
    assert {scenario for scenario, _ in rows} <= names
    assert all(doc.why and doc.kernel and doc.vudm for doc in rows.values())

    def result(events: int) -> Any:
        fio = SimpleNamespace(exit_code=0, errors=0, verify="passed")
        return SimpleNamespace(passed=True, guest=SimpleNamespace(fio=fio, io_errors=[]),
                               dm={"mp": {"table": [], "status": [], "event_nr": events}})

    key = ("mirror-leg-failure-hold-repair", "mir events")
    doc = rows[key]
    mirror = {"mir": {"table": [], "status": [], "event_nr": 0}}
    def mir(events: int) -> Any:
        r = result(events)
        r.dm = {"mir": dict(mirror["mir"], event_nr=events)}
        return r
    assert compare(key[0], mir(int(doc.vudm)), mir(int(doc.kernel))).agree
    assert not compare(key[0], mir(int(doc.vudm)), mir(int(doc.kernel) + 2)).agree
    assert not compare(key[0], mir(int(doc.vudm) + 1), mir(int(doc.kernel))).agree
    assert not compare("seed001-valid-paths", mir(int(doc.vudm)), mir(int(doc.kernel))).agree
    any_count = ("seed003-split-requeue-noflush-load", "mp events")
    assert rows[any_count].vudm == "*"
    assert compare(any_count[0], result(7), result(int(rows[any_count].kernel))).agree
    assert not compare(any_count[0], result(7), result(2)).agree

    line = "0 96 multipath 2 {} 0 0 1 1 A 0 1 0 a2 A 0"
    def status(bit: int) -> Any:
        r = result(1)
        r.dm["mp"]["status"] = [line.format(bit), "96 96 linear", line.format(bit)]
        return r
    name = "seed003-split-flush-suspend-eio"
    assert compare(name, status(1), status(0)).agree
    assert not compare(name, status(0), status(1)).agree


def test_scenario_diff_hides_a_degraded_mirrors_sync_count_only() -> None:
    from qmp_scenarios.oracle.scenario_diff import mirror_sync
    assert mirror_sync("8 8 mirror 2 m0 m1 3/8 1 AD 1 core") == "8 8 mirror 2 m0 m1 ?/8 1 AD 1 core"
    assert mirror_sync("8 8 mirror 2 m0 m1 7/8 1 AA 1 core") == "8 8 mirror 2 m0 m1 7/8 1 AA 1 core"
    assert mirror_sync("0 8 linear m0 0") == "0 8 linear m0 0"
