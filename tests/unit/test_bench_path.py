"""``python -m backend.bench.path`` measures the daemon's event loop unless told otherwise:
its loop names and default are backend.eventloop's, so an in-process figure is one of
what ``vudm serve`` runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from backend import eventloop

ROOT = Path(__file__).resolve().parents[2]


def _child_loop(image: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """The loop one bench child ran (a null device: no I/O, a 10 ms measured interval)."""
    environ = os.environ | (env or {})
    out = subprocess.run(
        [sys.executable, "-m", "backend.bench.path", "--child", "--image", str(image),
         "--path", "transport", "--qd", "1", "--seconds", "0.01", "--device", "null", *args],
        cwd=ROOT, env=environ, check=True, capture_output=True, text=True, timeout=60).stdout
    return str(json.loads(out.strip().splitlines()[-1])["loop"])


@pytest.fixture
def image(tmp_path: Path) -> Path:
    path = tmp_path / "null.img"
    with path.open("wb") as f:
        f.truncate(1 << 20)
    return path


def test_unasked_it_runs_the_daemons_loop(image: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(eventloop.ENV, raising=False)
    assert _child_loop(image) == eventloop.chosen() == "uvloop"
    assert _child_loop(image, env={eventloop.ENV: "asyncio"}) == "asyncio"


@pytest.mark.parametrize("name", eventloop.LOOPS)
def test_loop_picks_either_for_an_ab(image: Path, name: str) -> None:
    assert _child_loop(image, "--loop", name) == name


# Python calls per request on vudm's path (vhost/ in, the mapped device or the bare
# transport, a null device, vhost/ out), counted by cProfile: deterministic, unlike a
# timing. Cold caches make every frame cost about 1 µs at low depth in a guest, so new
# per-request work must be a decision: raise a budget only with a reason in the commit
# message, and lower it when a change removes calls. The counts include the bench's
# stand-ins for libvhost-user (pop, push, notify, free: 5-6 calls).
CALL_BUDGETS = [("dm", 1, 38), ("transport", 1, 38), ("dm", 32, 25), ("transport", 32, 25)]


@pytest.mark.parametrize(("path", "qd", "budget"), CALL_BUDGETS)
def test_python_calls_per_request_stay_within_budget(image: Path, path: str, qd: int,
                                                     budget: int) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "backend.bench.path", "--child", "--image", str(image),
         "--path", path, "--qd", str(qd), "--seconds", "0.1", "--device", "null",
         "--kick", "fd", "--loop", "uvloop", "--calls"],
        cwd=ROOT, check=True, capture_output=True, text=True, timeout=60).stdout
    calls: dict[str, float] = json.loads(out.strip().splitlines()[-1])["calls"]
    total = sum(calls.values())
    top = ", ".join(f"{name} {n:.2f}" for name, n in list(calls.items())[:12])
    assert total <= budget + 0.5, f"{total:.2f} Python calls per request (budget {budget}): {top}"
