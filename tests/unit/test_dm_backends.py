"""The kernel oracle's translations, without a guest: path names to the guest's device
numbers and back (whole words only), and a path's A/F read from a status line."""

from __future__ import annotations

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
