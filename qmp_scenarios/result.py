"""What a scenario returns: steps with timestamps, the guest's own evidence, timings.

The JSON form (``ScenarioResult.to_json``) is the contract of DESIGN.md: ``scenario``,
``passed``, ``steps`` (``name``, ``start``, ``end``, ``ok``), ``guest`` (``io_errors``,
``fio`` with ``exit_code``, ``errors``, ``verify``), ``timings`` in seconds, and
``evidence`` (declared minimum counters, the daemon's observed counters, ok, and what
was short). Times are seconds since the scenario started.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .evidence import lookup


@dataclass
class StepRecord:
    name: str
    start: float
    end: float
    ok: bool
    detail: str = ""


@dataclass
class FioEvidence:
    exit_code: int
    errors: int
    verify: str  # "passed", "failed" or "not-run"
    read_ios: int = 0
    write_ios: int = 0
    error_text: str = ""


@dataclass
class GuestEvidence:
    io_errors: list[str] = field(default_factory=list)
    fio: FioEvidence | None = None
    path_error_lines: int = 0
    """Kernel oracle only: the path disks' error lines, left out of ``io_errors``. They
    share the block layer's printk rate limit (a burst of 10 per 5 s) with the mapped
    device's own lines, so when they are there the device's may have been suppressed."""


@dataclass
class EventRecord:
    """A daemon event (PATH_FAILED, PATH_REINSTATED, DM_EVENT, ...) at the daemon's own
    time, in seconds since the scenario started."""

    t: float
    name: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class EvidenceRecord:
    """What the scenario had to prove (``declared``: minimum counters), what the daemon
    counted (``observed``: by mapped device / ``export:ID``), and the verdict on it."""

    declared: dict[str, dict[str, int | str]] = field(default_factory=dict)
    observed: dict[str, dict[str, Any]] = field(default_factory=dict)
    ok: bool = False
    short: list[str] = field(default_factory=list)


@dataclass
class ScenarioResult:
    scenario: str
    expect: str  # "no-eio", "eio" or "verify-fails" (registry.Expect)
    passed: bool = False
    verdict: str = ""
    steps: list[StepRecord] = field(default_factory=list)
    guest: GuestEvidence = field(default_factory=GuestEvidence)
    timings: dict[str, float] = field(default_factory=dict)
    iops: list[tuple[float, float, float]] = field(default_factory=list)  # t, read, write
    evidence: EvidenceRecord = field(default_factory=EvidenceRecord)
    events: list[EventRecord] = field(default_factory=list)
    started_at: str = ""
    oracle: str = "vudm"
    """Who answered the dm steps: vudm, or the guest kernel's dm (--oracle kernel)."""
    dm: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Each mapped device's final table and status lines and event number, as the
    oracle showed them (path names as the scenario wrote them)."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n")

    def report(self) -> str:
        """A short human report."""
        lines = [f"scenario {self.scenario}: {'PASSED' if self.passed else 'FAILED'}"
                 f" (expect {self.expect})"]
        if self.verdict:
            lines.append(f"  verdict: {self.verdict}")
        for s in self.steps:
            mark = "ok " if s.ok else "ERR"
            extra = f"  {s.detail}" if s.detail else ""
            lines.append(f"  [{mark}] {s.start:7.2f}-{s.end:7.2f}s  {s.name}{extra}")
        f = self.guest.fio
        if f is not None:
            lines.append(f"  guest fio: exit {f.exit_code}, errors {f.errors}, verify {f.verify},"
                         f" {f.read_ios} reads, {f.write_ios} writes")
        lines.append(f"  guest kernel I/O errors: {len(self.guest.io_errors)}")
        for e in self.guest.io_errors[:5]:
            lines.append(f"    {e}")
        ev = self.evidence
        lines.append(f"  evidence: {'ok' if ev.ok else 'SHORT'} ({_declared_text(ev)})")
        lines.extend(f"    short: {why}" for why in ev.short)
        for k, v in self.timings.items():
            lines.append(f"  {k}: {v:.3f}s")
        return "\n".join(lines)


def _declared_text(ev: EvidenceRecord) -> str:
    parts = []
    for owner, paths in ev.declared.items():
        for path, minimum in paths.items():
            entry = ev.observed.get(owner)
            seen = lookup(entry, path) if entry is not None else None
            need = minimum if isinstance(minimum, str) else f">={minimum}"
            parts.append(f"{owner} {path} {seen if seen is not None else '-'}{need}")
    return ", ".join(parts) or "none declared"


class Recorder:
    """Times the steps of one scenario; ``async with rec.step(name):`` records one."""

    def __init__(self, result: ScenarioResult) -> None:
        self.result = result
        self.t0 = time.monotonic()
        self.wall_t0 = time.time()
        """The same instant on the wall clock (QMP event timestamps are wall time)."""
        result.started_at = time.strftime("%Y-%m-%dT%H:%M:%S%z")

    def now(self) -> float:
        return time.monotonic() - self.t0

    def since_start(self, wall: float) -> float:
        """A wall-clock time (a QMP event's timestamp) in seconds since the start."""
        return wall - self.wall_t0

    @contextlib.asynccontextmanager
    async def step(self, name: str) -> AsyncIterator[StepRecord]:
        rec = StepRecord(name=name, start=self.now(), end=0.0, ok=False)
        self.result.steps.append(rec)
        try:
            yield rec
            rec.ok = True
        except BaseException as e:
            rec.detail = rec.detail or f"{type(e).__name__}: {e}"
            raise
        finally:
            rec.end = self.now()
