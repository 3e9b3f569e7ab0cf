"""The whole vudm exception tree, in one place.

::

    VudmError
     +-- TableError        a table line is invalid (names the line and the reason)
     +-- StateError        an operation in the wrong state (says which state it needs)
     +-- DeviceError       a device cannot be opened, found, or is in use
     +-- ControlError      a bad QMP command or argument
     +-- GuestError        a guest misbehaved (boot, agent, workload)
     +-- JournalError      the state directory cannot be read, written or restored

Control operations raise these; the I/O path never raises, it returns a Status.
Root causes are kept with ``raise ... from``. CancelledError is never wrapped.
"""

from __future__ import annotations


class VudmError(Exception):
    """Root of every error vudm raises on purpose."""


class TableError(VudmError):
    """A table was rejected as a whole; the live table is untouched.

    ``line`` is 1-based (0 when the error is about the table as a whole).
    """

    def __init__(self, reason: str, line: int = 0) -> None:
        self.reason = reason
        self.line = line
        super().__init__(f"table line {line}: {reason}" if line else reason)


class StateError(VudmError):
    """An operation was asked for in a state that does not allow it."""

    def __init__(self, what: str, state: str, required: str) -> None:
        self.what = what
        self.state = state
        self.required = required
        super().__init__(f"{what}: device is {state}, needs {required}")


class DeviceError(VudmError):
    """A device could not be opened, found, or is in use."""


class ControlError(VudmError):
    """A control-plane command or argument is wrong."""


class GuestError(VudmError):
    """A guest failed to boot, its agent failed, or a workload could not run."""


class JournalError(VudmError):
    """The daemon's state directory could not be written, read or restored from."""
