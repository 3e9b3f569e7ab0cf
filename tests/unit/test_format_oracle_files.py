"""The format oracle's checked-in files, without a guest: the sequences parse, every
entry of docs/kernel-differences.md names a command that exists (with its text) and
gives a reason; normalising maps each side's device names to the same placeholders."""

from __future__ import annotations

import pytest

from qmp_scenarios.oracle.differences import DOC, disagreements, documented_rows, parse_doc
from qmp_scenarios.oracle.format import (
    SEQUENCES,
    Difference,
    normalise,
    parse_sequences,
    substitute,
)

VERBS = {"create", "load", "clear", "suspend", "resume", "message", "table", "status",
         "info", "remove"}


def test_sequences_parse_and_use_dmsetup_verbs_vudm_has() -> None:
    seqs = parse_sequences(SEQUENCES.read_text())
    commands = [c for s in seqs for c in s.commands]
    assert len(commands) > 250
    assert {c.argv[0] for c in commands} <= VERBS
    assert len({c.id for c in commands}) == len(commands)


def test_every_documented_difference_names_a_command_and_a_reason() -> None:
    by_id = {c.id: c for s in parse_sequences(SEQUENCES.read_text()) for c in s.commands}
    entries = parse_doc(DOC.read_text())
    assert entries, "docs/kernel-differences.md lists nothing"
    for e in entries:
        assert e.id in by_id, f"{e.id}: no such command in sequences.dm"
        assert by_id[e.id].text == e.command, f"{e.id}: the command text changed"
        assert len(e.why) > 20 and "TODO" not in e.why, f"{e.id}: no reason given"


def test_normalise_maps_both_sides_to_placeholders() -> None:
    kernel = ["0 8192 linear 252:16 0 ", "0 8 multipath 2 0 0 0 1 1 E 0 1 0 252:32 A 0 ",
              "Major, minor:      253, 0"]
    vudm = ["0 8192 linear d0 0", "0 8 multipath 2 0 0 0 1 1 E 0 1 0 d1 A 0"]
    assert normalise(kernel, ["252:16", "252:32"]) == normalise(vudm, ["d0", "d1"])
    assert substitute(["fail_path", "$D1"], ["d0", "d1"]) == ["fail_path", "d1"]


def test_a_difference_the_document_lacks_is_a_disagreement() -> None:
    entries = parse_doc(DOC.read_text())
    new = Difference("linear/1", "create lin", "(no output)", "refused")
    problems = disagreements([new], entries)
    assert any("not documented" in p for p in problems)
    assert len(problems) == 1 + len(entries)  # and every entry is now stale


@pytest.mark.parametrize("text", ["### x/1 `cmd`\n- kernel: `a`\n- vudm: `b`\n"])
def test_an_entry_without_a_reason_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="lacks why"):
        parse_doc(text)


@pytest.mark.parametrize("text", ["#### seed001-valid-paths: mp events\n- kernel: `1`\n"
                                  "- why: the vudm value is missing\n## next section\n"])
def test_a_scenario_row_without_vudm_is_refused(text: str) -> None:
    """The scenario rows go through the same parser, with the same refusal."""
    with pytest.raises(ValueError, match=r"seed001-valid-paths: mp events.* lacks vudm"):
        documented_rows(text)
