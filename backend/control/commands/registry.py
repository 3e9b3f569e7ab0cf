"""The command table: every QMP command's name, argument schema and handler.

Commands register themselves with :func:`command` at import; :class:`Dispatcher` binds
the table to a daemon and is what the QMP layer calls. It validates the arguments before
the handler sees them (so a bad argument never touches state) and turns every refusal
into a :class:`~..errors.CommandError` whose ``desc`` starts with the command's name.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ...errors import CommandError, CommandNotFound, StateError, VudmError
from ..schema import Arg, Schema, validate

if TYPE_CHECKING:
    from ...daemon import Daemon

log = logging.getLogger(__name__)

Handler = Callable[["Daemon", dict[str, Any]], Awaitable[object]]


@dataclass(frozen=True)
class Command:
    """One QMP command."""

    name: str
    args: Schema
    handler: Handler
    doc: str

    def describe(self) -> dict[str, object]:
        return {"name": self.name, "doc": self.doc,
                "arguments": [a.describe() for a in self.args]}


class Registry:
    """Commands by name; registering a name twice is a bug."""

    def __init__(self) -> None:
        self._commands: dict[str, Command] = {}

    def add(self, cmd: Command) -> None:
        if cmd.name in self._commands:
            raise ValueError(f"command {cmd.name!r} registered twice")
        self._commands[cmd.name] = cmd

    def get(self, name: str) -> Command | None:
        return self._commands.get(name)

    def __iter__(self) -> Iterator[Command]:
        return iter(sorted(self._commands.values(), key=lambda c: c.name))


REGISTRY = Registry()


def command(name: str, *args: Arg) -> Callable[[Handler], Handler]:
    """Register ``handler`` as QMP command ``name`` taking ``args``; its docstring is
    the command's documentation (shown by query-commands)."""

    def deco(handler: Handler) -> Handler:
        doc = (handler.__doc__ or "").strip().splitlines()
        REGISTRY.add(Command(name, args, handler, doc[0] if doc else ""))
        return handler

    return deco


class Dispatcher:
    """The registry bound to one daemon: validate, run, and name every failure."""

    def __init__(self, daemon: Daemon, registry: Registry = REGISTRY) -> None:
        self.daemon = daemon
        self.registry = registry

    async def execute(self, name: str, arguments: Mapping[str, object]) -> object:
        cmd = self.registry.get(name)
        if cmd is None:
            shown = name if len(name) <= 128 else f"{name[:128]}... ({len(name)} characters)"
            raise CommandNotFound(f"The command {shown} has not been found")
        args = validate(name, cmd.args, arguments)
        try:
            return await cmd.handler(self.daemon, args)
        except asyncio.CancelledError:
            raise
        except CommandError as e:
            raise type(e)(_prefixed(name, e.desc)) from e
        except StateError as e:
            who = f"device {args['name']!r}" if "name" in args else "device"
            raise CommandError(_prefixed(name, f"{who} is {e.state}, needs {e.required}")
                               ) from e
        except VudmError as e:
            raise CommandError(_prefixed(name, str(e))) from e
        except Exception as e:
            log.exception("%s: unexpected failure", name)
            raise CommandError(f"{name}: internal error: {type(e).__name__}:"
                               f" {str(e)[:200]}") from e


MAX_DESC = 1000
"""Longest error desc: a message quoting what the client sent (a 5,000-character path)
is cut, so that no reply and no log line grows with the input."""


def _prefixed(name: str, desc: str) -> str:
    desc = desc if desc.startswith(f"{name}:") else f"{name}: {desc}"
    if len(desc) > MAX_DESC:
        desc = f"{desc[:MAX_DESC]}... ({len(desc)} characters)"
    return desc
