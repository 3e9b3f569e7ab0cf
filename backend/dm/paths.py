"""The path-report protocol: what a path checker (multipathd's job) may see and do.

A target with paths (multipath) reports each path's name, device and state, and takes
the checker's verdicts; the checker knows nothing else of it. The verbs are those of
multipathd's messages (``fail_path``, ``reinstate_path``, ``queue_if_no_path`` /
``fail_if_no_path``) and refuse the same way: MessageError(EBUSY) while the device is
suspended, MessageError naming an unknown path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from backend.blockio import BlockDevice


@dataclass(frozen=True)
class PathReport:
    """One path as the target sees it now."""

    name: str
    """The path's device name in the table (what events and messages use)."""
    device: BlockDevice
    """What to probe."""
    active: bool
    """False once failed (by an I/O error, a message or the checker)."""
    failures: int = 0
    """How many times the path has failed so far. A probe answered OK says the path
    worked when the probe began; a failure counted since then is newer news, so the
    checker does not reinstate on that answer (the next round's probe decides)."""


@runtime_checkable
class PathTarget(Protocol):
    """A target whose paths a checker probes; multipath implements it."""

    @property
    def no_path_retry(self) -> int | None:
        """multipathd's no_path_retry N: stop queueing after N checks finding no path
        (None: the checker leaves queueing alone)."""
        ...

    @property
    def queue_if_no_path(self) -> bool:
        """Whether I/O waits in the target while no path is valid."""
        ...

    def path_reports(self) -> list[PathReport]:
        """Every path, in table order."""
        ...

    def fail_path(self, name: str) -> bool:
        """Fail path ``name``; True if that changed its state."""
        ...

    def reinstate_path(self, name: str) -> bool:
        """Reinstate path ``name``; True if that changed its state."""
        ...

    def set_queue_if_no_path(self, on: bool) -> None:
        """Turn queueing on or off (``queue_if_no_path`` / ``fail_if_no_path``)."""
        ...
