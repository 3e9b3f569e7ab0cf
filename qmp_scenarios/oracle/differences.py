"""docs/kernel-differences.md: the format oracle's remaining differences, each with its
reason, kept in sync with what the oracle finds.

Each difference is an entry::

    ### SEQUENCE/N `the command`
    - kernel: `what the kernel answered`
    - vudm: `what vudm answered`
    - why: the reason (free text, may continue on the next lines)

:func:`disagreements` lists every way the document and an oracle run differ: a
difference the document lacks, an entry the oracle no longer sees, or an entry whose
replies changed. The format oracle's test fails on any.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .format import Difference

DOC = Path(__file__).resolve().parents[2] / "docs" / "kernel-differences.md"
_HEADING = re.compile(r"^### (\S+) `(.*)`$")
_FIELD = re.compile(r"^- (kernel|vudm): `(.*)`$")
_WHY = re.compile(r"^- why: (.*\S)")


@dataclass(frozen=True)
class DocEntry:
    id: str
    command: str
    kernel: str
    vudm: str
    why: str


def parse_doc(text: str) -> list[DocEntry]:
    entries: list[DocEntry] = []
    current: dict[str, str] | None = None

    def close() -> None:
        if current is not None:
            missing = [k for k in ("kernel", "vudm", "why") if k not in current]
            if missing:
                raise ValueError(f"kernel-differences.md: entry {current['id']} lacks "
                                 f"{', '.join(missing)}")
            entries.append(DocEntry(current["id"], current["command"], current["kernel"],
                                    current["vudm"], current["why"]))

    for line in text.splitlines():
        if m := _HEADING.match(line):
            close()
            current = {"id": m.group(1), "command": m.group(2)}
        elif current is not None and (m := _FIELD.match(line)):
            current[m.group(1)] = m.group(2)
        elif current is not None and (m := _WHY.match(line)):
            current["why"] = m.group(1)
        elif line.startswith("#"):
            close()
            current = None
    close()
    return entries


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
