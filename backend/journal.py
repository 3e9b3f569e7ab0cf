"""The state journal: one JSON document in a directory, replaced atomically.

``vudm serve --state-dir DIR`` keeps its whole state in ``DIR/state.json``. A write is
the classic sequence: the new document goes to ``state.json.tmp``, which is fsynced,
renamed over ``state.json``, and the directory is fsynced so the rename itself survives
a power cut. Whatever point the writer dies at (SIGKILL included), a reader finds either
the previous document or the new one, whole: the rename is the only moment the name
changes what it points to, and a half-written temp file is never read (it is removed
at the next open).

``crash_point`` is the seam the unit test uses to kill the writer at each step; it is
called with the step's name (:data:`STEPS`) once that step is done.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .errors import JournalError

log = logging.getLogger(__name__)

FORMAT = 1
"""The document's ``format``; a reader refuses one it does not know."""
STATE_FILE = "state.json"
TEMP_FILE = "state.json.tmp"
STEPS = ("temp-partial", "temp-written", "renamed", "dir-synced")
"""The crash points of a write, in order: half the temp file written; the temp file
written and fsynced; renamed over the state file; the directory fsynced."""

CrashPoint = Callable[[str], None]


class StateJournal:
    """Read and atomically replace the state document in ``directory``."""

    def __init__(self, directory: str | os.PathLike[str], *,
                 crash_point: CrashPoint | None = None) -> None:
        self.directory = Path(directory)
        self.path = self.directory / STATE_FILE
        self._temp = self.directory / TEMP_FILE
        self._crash_point = crash_point
        self.writes = 0

    def open(self) -> None:
        """Create the directory if needed and drop a temp file a dead writer left."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            if self._temp.exists():
                log.info("state dir %s: removing %s left by an interrupted write",
                         self.directory, TEMP_FILE)
                self._temp.unlink()
        except OSError as e:
            raise JournalError(f"state dir {self.directory}: {e.strerror or e}") from e

    def read(self) -> dict[str, Any] | None:
        """The last document written whole, or None if there is none yet."""
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise JournalError(f"state {self.path}: {e.strerror or e}") from e
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as e:
            raise JournalError(f"state {self.path}: not valid JSON ({e})") from e
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise JournalError(f"state {self.path}: not a vudm state document of"
                               f" format {FORMAT}")
        return doc

    def write(self, state: Mapping[str, Any]) -> None:
        """Replace the document with ``state`` (plus ``format``); returns once durable."""
        data = json.dumps({"format": FORMAT, **state}, indent=1, sort_keys=True).encode()
        try:
            fd = os.open(self._temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC,
                         0o600)
            try:
                half = len(data) // 2
                _write_all(fd, data[:half])
                self._reached("temp-partial")
                _write_all(fd, data[half:])
                os.fsync(fd)
            finally:
                os.close(fd)
            self._reached("temp-written")
            os.rename(self._temp, self.path)
            self._reached("renamed")
            dfd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
            self._reached("dir-synced")
        except OSError as e:
            raise JournalError(f"state {self.path}: cannot write: {e.strerror or e}") from e
        self.writes += 1

    def _reached(self, step: str) -> None:
        if self._crash_point is not None:
            self._crash_point(step)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
