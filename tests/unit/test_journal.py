"""The state journal never shows a torn state: its writer is SIGKILLed at every step of
a write (half the temp file written, temp written and fsynced, renamed, directory
fsynced), in a real subprocess, and a fresh reader finds the old state or the new one,
whole, every time."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from backend.errors import JournalError
from backend.journal import STATE_FILE, STEPS, TEMP_FILE, StateJournal

OLD = {"mapped": [{"name": "a", "state": "ACTIVE", "live": "0 8 zero"}], "n": 1}
NEW = {"mapped": [{"name": "a", "state": "SUSPENDED", "live": "0 8 zero",
                   "inactive": "0 16 zero " + "x" * 5000}], "n": 2}
"""NEW is large, so "half the temp file" is a real partial write of a real document."""

_WRITER = """
import json, os, signal, sys
from backend.journal import StateJournal
directory, step, old, new = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
if old != "null":
    StateJournal(directory).write(json.loads(old))
def crash(reached):
    if reached == step:
        os.kill(os.getpid(), signal.SIGKILL)
journal = StateJournal(directory, crash_point=crash)
journal.write(json.loads(new))
print("survived")
"""


def _kill_writer_at(directory: Path, step: str, old: dict[str, object] | None) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", _WRITER, str(directory), step, json.dumps(old),
         json.dumps(NEW)], capture_output=True, text=True, timeout=60,
        cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, proc.stderr)
    assert "survived" not in proc.stdout


def _strip(doc: dict[str, object] | None) -> dict[str, object] | None:
    if doc is None:
        return None
    return {k: v for k, v in doc.items() if k != "format"}


@pytest.mark.parametrize("old", [None, OLD], ids=["first-write", "replace"])
@pytest.mark.parametrize("step", STEPS)
def test_a_writer_killed_at_any_step_leaves_old_or_new_never_torn(
        tmp_path: Path, step: str, old: dict[str, object] | None) -> None:
    _kill_writer_at(tmp_path, step, old)
    if step in ("temp-partial", "temp-written"):
        assert (tmp_path / TEMP_FILE).exists()  # the kill really hit mid-write
    journal = StateJournal(tmp_path)
    journal.open()
    assert not (tmp_path / TEMP_FILE).exists()
    seen = _strip(journal.read())
    # before the rename the old state (or none), from the rename on the new one
    expected = old if step in ("temp-partial", "temp-written") else NEW
    assert seen == expected
    # and the journal goes on working after the crash
    journal.write({"n": 3})
    assert _strip(StateJournal(tmp_path).read()) == {"n": 3}


def test_every_step_is_a_crash_point() -> None:
    seen: list[str] = []
    assert STEPS == ("temp-partial", "temp-written", "renamed", "dir-synced")
    # the seam is called once per step, in order, on a real write
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        StateJournal(d, crash_point=seen.append).write({"x": 1})
    assert tuple(seen) == STEPS


def test_a_foreign_or_corrupt_state_file_is_refused_by_name(tmp_path: Path) -> None:
    (tmp_path / STATE_FILE).write_text("{not json")
    with pytest.raises(JournalError, match=r"state .*state.json: not valid JSON"):
        StateJournal(tmp_path).read()
    (tmp_path / STATE_FILE).write_text('{"format": 99}')
    with pytest.raises(JournalError, match="not a vudm state document of format 1"):
        StateJournal(tmp_path).read()


def test_an_unwritable_directory_is_a_journal_error(tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_text("")
    with pytest.raises(JournalError, match="cannot write"):
        StateJournal(target).write({"x": 1})
    if os.geteuid() != 0:
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        with pytest.raises(JournalError):
            StateJournal(ro).write({"x": 1})
