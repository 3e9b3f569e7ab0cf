"""Things a parallel test run does once: build the guest image, under a file lock in a
directory every pytest-xdist worker of the run shares.

Under xdist, each worker's basetemp is ``<run>/popen-gwN``; their common parent is the
run's own directory, so the lock and the recorded outcome are per run, never shared with
an earlier run. Without xdist, the basetemp itself is the run's directory.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from guests.errors import GuestError
from guests.image import GuestImage


def worker_id() -> str:
    """``gwN`` under pytest-xdist, ``master`` otherwise."""
    return os.environ.get("PYTEST_XDIST_WORKER", "master")


def run_dir(basetemp: Path) -> Path:
    """The directory every worker of this run shares."""
    return basetemp if worker_id() == "master" else basetemp.parent


def image_once(shared: Path, build: Callable[[], GuestImage]) -> GuestImage | str:
    """The guest image, built by the first worker to get here; the others wait on the lock
    and read what it recorded. Returns the image or why it could not be built."""
    from filelock import FileLock

    outcome_file = shared / "vudm-guest-image.json"
    with FileLock(str(shared / "vudm-guest-image.lock")):
        if not outcome_file.exists():
            try:
                image = build()
                outcome = {"kernel": str(image.kernel), "initrd": str(image.initrd)}
            except GuestError as exc:
                outcome = {"error": str(exc)}
            outcome_file.write_text(json.dumps(outcome))
        recorded: dict[str, str] = json.loads(outcome_file.read_text())
    if "error" in recorded:
        return recorded["error"]
    return GuestImage(kernel=Path(recorded["kernel"]), initrd=Path(recorded["initrd"]))
