"""docs/kernel-differences.md: the differences that remain between vudm and the kernel's
dm, each with its reason, and its one parser.

A format oracle difference is an entry::

    ### SEQUENCE/N `the command`
    - kernel: `what the kernel answered`
    - vudm: `what vudm answered`
    - why: the reason (free text, may continue on the next lines)

A scenario difference (``vudm scenario diff``, section "Scenario differences") has the
same fields under ``#### SCENARIO: ROW`` (:func:`documented_rows`).

:func:`disagreements` lists every way the document and an oracle run differ: a
difference the document lacks, an entry the oracle no longer sees, or an entry whose
replies changed. The format oracle's test fails on any.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from .format import Difference

DOC = Path(__file__).resolve().parents[2] / "docs" / "kernel-differences.md"
_FORMAT_HEADING = re.compile(r"^### (\S+) `(.*)`$")
_SCENARIO_HEADING = re.compile(r"^#### (\S+): (.+)$")
_FIELD = re.compile(r"^- (kernel|vudm|why): (.*)$")
_FIELDS = ("kernel", "vudm", "why")


@dataclass(frozen=True)
class DocEntry:
    id: str
    command: str
    kernel: str
    vudm: str
    why: str


@dataclass(frozen=True)
class DocumentedRow:
    kernel: str
    vudm: str
    why: str


def _entries(text: str, heading: re.Pattern[str]
             ) -> Iterator[tuple[re.Match[str], dict[str, str]]]:
    """Each entry whose heading line matches ``heading``, with its ``- kernel:``,
    ``- vudm:`` and ``- why:`` fields (the replies without their backticks); an entry
    ends at the next line starting with ``#``. ValueError names an incomplete entry."""
    head: re.Match[str] | None = None
    fields: dict[str, str] = {}
    for line in [*text.splitlines(), "#"]:
        if line.startswith("#"):
            if head is not None:
                missing = [f for f in _FIELDS if f not in fields]
                if missing:
                    raise ValueError(f"kernel-differences.md: entry {head.group(0)!r} "
                                     f"lacks {', '.join(missing)}")
                yield head, fields
            head, fields = heading.match(line), {}
        elif head is not None and (m := _FIELD.match(line)):
            fields[m.group(1)] = _unquote(m.group(2)) if m.group(1) != "why" \
                else m.group(2).strip()


def _unquote(value: str) -> str:
    return value[1:-1] if len(value) >= 2 and value[0] == value[-1] == "`" else value


def parse_doc(text: str) -> list[DocEntry]:
    """The format oracle's entries (``### SEQUENCE/N `command```)."""
    return [DocEntry(head.group(1), head.group(2), f["kernel"], f["vudm"], f["why"])
            for head, f in _entries(text, _FORMAT_HEADING)]


def documented_rows(text: str) -> dict[tuple[str, str], DocumentedRow]:
    """The scenario differences (``#### SCENARIO: ROW``), by (scenario, row)."""
    return {(head.group(1), head.group(2).strip()): DocumentedRow(f["kernel"], f["vudm"],
                                                                  f["why"])
            for head, f in _entries(text, _SCENARIO_HEADING)}


def render(diff: Difference, why: str = "TODO: fix vudm, or say why it differs") -> str:
    return (f"### {diff.id} `{diff.command}`\n- kernel: `{diff.kernel}`\n"
            f"- vudm: `{diff.vudm}`\n- why: {why}\n")


def disagreements(found: Sequence[Difference], entries: Sequence[DocEntry]) -> list[str]:
    """How the oracle's differences and the document disagree (empty: in sync)."""
    documented = {e.id: e for e in entries}
    problems = []
    for d in found:
        e = documented.pop(d.id, None)
        if e is None:
            problems.append(f"not documented:\n{render(d)}")
        elif (e.command, e.kernel, e.vudm) != (d.command, d.kernel, d.vudm):
            problems.append(f"changed since documented ({e.id}): the oracle now says\n"
                            f"{render(d, e.why)}")
    problems += [f"documented but no longer a difference: {e.id} `{e.command}`"
                 for e in documented.values()]
    return problems
