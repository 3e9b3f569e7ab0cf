"""The control plane's exceptions, in one place.

::

    VudmError                      (backend.errors)
     +-- ControlError              a bad QMP command or argument
          +-- CommandError         a command failed; carries the QMP error class
               +-- CommandNotFound no such command (or not in this negotiation phase)
               +-- ConfigError     a ``vudm serve --config`` file or one of its entries
          +-- ProtocolError        the peer broke the wire protocol (bad JSON, ...)
          +-- ClientError          the CLI could not reach or use the daemon

Every other VudmError a command raises (TableError, StateError, DeviceError) reaches
the client as a ``GenericError`` whose ``desc`` starts with the command's name.
"""

from __future__ import annotations

from ..errors import ControlError

GENERIC_ERROR = "GenericError"
COMMAND_NOT_FOUND = "CommandNotFound"


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
