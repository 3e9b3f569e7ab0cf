"""The whole backend exception tree, in one place (guests/ has its own: guests.errors).

::

    VudmError                  every error vudm raises on purpose
     +-- TableError            a table line is invalid (names the line and the reason)
     +-- StateError            an operation in the wrong state (says which state it needs)
     +-- DeviceError           a device cannot be opened, found, or is in use
     +-- LimitError            an input outside what vudm accepts (backend.limits)
     +-- MessageError          a target refused a message; carries the errno
     +-- DuplicateTargetError  a target type registered twice under one name
     +-- JournalError          the state directory cannot be read, written or restored
     +-- AbiError              the ctypes layout disagrees with libvhost-user's
     +-- VhostUserError        a vhost-user connection could not be set up
     +-- ControlError          a bad QMP command or argument
          +-- CommandError     a command failed; carries the QMP error class
          |    +-- CommandNotFound  no such command (or not in this negotiation phase)
          |    +-- ConfigError      a ``vudm serve --config`` file or one of its entries
          +-- ProtocolError    the peer broke the wire protocol (bad JSON, ...)
          +-- ClientError      a client could not reach or use the daemon

    StateRefused (RuntimeError)  a server method called in the wrong run state: a caller
                                 bug, not an error vudm reports, so outside the tree

Control operations raise these; the I/O path never raises, it returns a Status. Every
VudmError a command raises that is not a CommandError (TableError, StateError,
DeviceError, ...) reaches the client as a ``GenericError`` whose ``desc`` starts with the
command's name. Root causes are kept with ``raise ... from``. CancelledError is never
wrapped.
"""

from __future__ import annotations

from .blockio import Status

GENERIC_ERROR = "GenericError"
COMMAND_NOT_FOUND = "CommandNotFound"
"""QMP error classes (what ``error.class`` says)."""


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


class JournalError(VudmError):
    """The daemon's state directory could not be written, read or restored from."""


class LimitError(VudmError):
    """An input is outside what vudm accepts; the message says what and why."""


class MessageError(VudmError):
    """A target (or the core) refused a message; ``errno`` says how (EINVAL, EBUSY...)."""

    def __init__(self, reason: str, errno: Status = Status.EINVAL) -> None:
        self.reason = reason
        self.errno = errno
        super().__init__(f"{reason} ({errno.name})")


class DuplicateTargetError(VudmError):
    """A second target type was registered under a name already taken."""


class AbiError(VudmError):
    """The ctypes layout disagrees with the compiled library's, or the probe is missing."""


class VhostUserError(VudmError):
    """A vhost-user connection could not be set up."""


class CommandError(ControlError):
    """A command was refused; ``error_class`` is what QMP's ``error.class`` says."""

    error_class = GENERIC_ERROR

    def __init__(self, desc: str) -> None:
        self.desc = desc
        super().__init__(desc)


class CommandNotFound(CommandError):
    """The command does not exist, or is not allowed before/after negotiation."""

    error_class = COMMAND_NOT_FOUND


class ConfigError(CommandError):
    """The config file is unreadable, malformed, or one of its entries was refused."""


class ProtocolError(ControlError):
    """A peer sent something that is not a QMP message (bad JSON, not an object)."""


class ClientError(ControlError):
    """The CLI could not connect to the daemon, or the daemon refused a command.

    ``error_class`` is the QMP error class when the daemon refused (else empty).
    """

    def __init__(self, message: str, error_class: str = "") -> None:
        self.error_class = error_class
        super().__init__(message)


class StateRefused(RuntimeError):
    """A server method was called in a run state that does not allow it (a caller bug)."""
