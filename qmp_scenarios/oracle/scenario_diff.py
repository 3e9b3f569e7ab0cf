"""``vudm scenario diff NAME``: one scenario run on vudm and on the guest kernel's own dm,
compared side by side.

Both runs use the same scenario code (its dm steps go through ``rig.dm``), the same kind
of NBD servers killed the same way, and the same fio job in the guest. Compared: the
verdict (passed or not), whether the guest saw EIO (fio or its kernel log), and for
every mapped device the final table and status lines (path names as the scenario wrote
them; the kernel's ``major:minor`` are mapped back) and the number of table events. Any
disagreement is a vudm bug until shown otherwise: the exit status is 1.

A row may differ on purpose: docs/kernel-differences.md, section "Scenario differences",
lists such rows (``#### SCENARIO: ROW`` with the kernel's and vudm's values and the
reason). A row that differs with exactly the documented values is shown with ``~`` and
does not make the scenario disagree; any other difference does. A vudm value of ``*``
is any value (a count vudm's side cannot pin down). ``#### SCENARIO: ROW *``
covers ROW, ROW 2, ROW 3...: its values are the part of the line that differs (vudm's
text replaced by the kernel's must give the kernel's line).

Two normalisations, both of numbers that are timing, not rules:
- a multipath status line's priority-group state is compared as A/E versus D. Whether a
  group is the current one (A) or merely enabled (E) at the end depends on whether the
  run's last I/O chose a path after the last path event; both sides flip between runs of
  the same scenario (seen in the seed-001 matrix), so it is no verdict;
- a mirror status line with a leg not A shows its in-sync region count as ``?``: the
  regions a leg failure marks out of sync are those the writes in flight at that moment
  touched (seen: 3/8 on vudm, 2/8 on the kernel, same scenario).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..result import ScenarioResult
from ..runner import run_scenario
from .differences import DOC, DocumentedRow, documented_rows


@dataclass
class Row:
    what: str
    vudm: str
    kernel: str
    why: str = ""
    """Set when the row differs exactly as docs/kernel-differences.md says, and why."""

    @property
    def same(self) -> bool:
        return self.vudm == self.kernel

    @property
    def ok(self) -> bool:
        return self.same or bool(self.why)


@dataclass
class ScenarioDiff:
    name: str
    rows: list[Row] = field(default_factory=list)
    vudm: ScenarioResult | None = None
    kernel: ScenarioResult | None = None

    @property
    def agree(self) -> bool:
        return all(r.ok for r in self.rows)

    def report(self) -> str:
        width = max([len(r.what) for r in self.rows] + [10])
        col = max([len(r.vudm) for r in self.rows] + [4])
        lines = [f"scenario diff {self.name}: "
                 f"{'AGREE' if self.agree else 'DISAGREE'}",
                 f"  {'':<{width}}  {'vudm':<{col}}  kernel"]
        for r in self.rows:
            mark = " " if r.same else "~" if r.why else "!"
            lines.append(f"{mark} {r.what:<{width}}  {r.vudm:<{col}}  {r.kernel}")
            if not r.same and r.why:
                lines.append(f"    documented: {r.why}")
        return "\n".join(lines)

    def to_json(self) -> dict[str, object]:
        return {"scenario": self.name, "agree": self.agree,
                "rows": [{"what": r.what, "vudm": r.vudm, "kernel": r.kernel,
                          "same": r.same, "documented": r.why} for r in self.rows],
                "vudm": self.vudm.to_json() if self.vudm else None,
                "kernel": self.kernel.to_json() if self.kernel else None}


def saw_eio(result: ScenarioResult) -> bool:
    fio = result.guest.fio
    return bool(result.guest.io_errors) or (fio is not None and (fio.exit_code != 0
                                                                  or fio.errors > 0))


def compare(name: str, vudm: ScenarioResult, kernel: ScenarioResult,
            documented: dict[tuple[str, str], DocumentedRow] | None = None) -> ScenarioDiff:
    """The rows of ``vudm`` versus ``kernel``; ``documented`` (default: read from
    docs/kernel-differences.md) marks the deliberate differences."""
    diff = ScenarioDiff(name, vudm=vudm, kernel=kernel)
    rows = diff.rows
    rows.append(Row("verdict", _verdict(vudm), _verdict(kernel)))
    rows.append(Row("guest saw EIO", _yes(saw_eio(vudm)), _yes(saw_eio(kernel))))
    rows.append(Row("fio verify", _verify(vudm), _verify(kernel)))
    for dm in sorted(set(vudm.dm) | set(kernel.dm)):
        v, k = vudm.dm.get(dm, {}), kernel.dm.get(dm, {})
        for kind in ("table", "status"):
            vl, kl = list(v.get(kind, [])), list(k.get(kind, []))
            if kind == "status":
                vl = [mirror_sync(group_states(x)) for x in vl]
                kl = [mirror_sync(group_states(x)) for x in kl]
            for i in range(max(len(vl), len(kl), 1)):
                rows.append(Row(f"{dm} {kind}" + (f" {i + 1}" if i else ""),
                                vl[i] if i < len(vl) else "-", kl[i] if i < len(kl) else "-"))
        rows.append(Row(f"{dm} events", str(v.get("event_nr", "-")),
                        str(k.get("event_nr", "-"))))
    if documented is None:
        documented = documented_rows(DOC.read_text())
    for r in rows:
        if r.same:
            continue
        doc = documented.get((name, r.what))
        if doc is not None and doc.kernel == r.kernel and doc.vudm in (r.vudm, "*"):
            r.why = doc.why
            continue
        # ``ROW *``: every row named ROW or ROW N that differs by exactly that change
        doc = documented.get((name, r.what.rstrip("0123456789").rstrip() + " *"))
        if doc is not None and doc.vudm in r.vudm and \
                r.vudm.replace(doc.vudm, doc.kernel) == r.kernel:
            r.why = doc.why
    return diff


def group_states(line: str) -> str:
    """A multipath status line with each group's A or E shown as ``A|E`` (see above)."""
    words = line.split()
    if len(words) < 4 or words[2] != "multipath":
        return line
    try:
        i = 3
        i += 1 + int(words[i])  # features
        i += 1 + int(words[i])  # hardware handler
        groups = int(words[i])
        i += 2  # #groups, next group
        for _ in range(groups):
            if words[i] in ("A", "E"):
                words[i] = "A|E"
            i += 1
            i += 1 + int(words[i])  # selector status args
            paths, per_path = int(words[i]), int(words[i + 1])
            i += 2 + paths * (3 + per_path)  # dev, A/F, fail count, selector words
    except (IndexError, ValueError):
        return line
    return " ".join(words)


def mirror_sync(line: str) -> str:
    """A mirror status line whose legs are not all A, with ``?/REGIONS`` for the in-sync
    count (see above)."""
    words = line.split()
    try:
        if len(words) < 4 or words[2] != "mirror":
            return line
        legs = int(words[3])
        health = words[6 + legs]
        if set(health) != {"A"} and "/" in words[4 + legs]:
            words[4 + legs] = "?/" + words[4 + legs].split("/", 1)[1]
    except (IndexError, ValueError):
        return line
    return " ".join(words)


def _verdict(r: ScenarioResult) -> str:
    return "passed" if r.passed else "failed"


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _verify(r: ScenarioResult) -> str:
    return r.guest.fio.verify if r.guest.fio is not None else "no fio"


async def diff_scenario(name: str, workdir: Path,
                        progress: Callable[[str], None] | None = None) -> ScenarioDiff:
    """Run ``name`` on vudm, then on the kernel's dm (one at a time: the machine's
    cores are the guests'), and compare."""
    results: dict[str, ScenarioResult] = {}
    for oracle in ("vudm", "kernel"):
        if progress:
            progress(f"running {name} on {oracle}")
        results[oracle] = await run_scenario(name, workdir / oracle, oracle=oracle,
                                             json_path=workdir / f"{oracle}.json")
    return compare(name, results["vudm"], results["kernel"])
