"""The QMP layer of the monitor: greeting, capabilities negotiation, commands, events.

It sits on :class:`~.protocol.JSONLineServer` and follows QEMU's wire behaviour so that
``qemu.qmp.QMPClient`` (and any QMP tool) drives vudm exactly as it drives QEMU or
qemu-storage-daemon: a greeting on connect, only ``qmp_capabilities`` until negotiated,
then ``{"execute", "arguments", "id"}`` answered by ``{"return"}`` or
``{"error": {"class", "desc"}}`` carrying the same ``id``, and timestamped events sent to
every negotiated client.

Each command runs in its own task, so a long ``dm-wait`` does not hold up the client's
other commands; replies carry the request's ``id`` and may come back out of order. A
client has at most :data:`MAX_IN_FLIGHT` commands running: past that its next message is
read only when one ends, so one client's flood of requests neither grows the daemon nor
hands the loop thousands of commands to run in one turn. Replies are never waited on:
a client that does not read them is disconnected by the transport once they pass its
write limit. A
command runs to its end even if its client disconnects (the daemon's shutdown cancels
it), so a client that dies never leaves a suspend half undone.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
import socket
import time
from collections.abc import Coroutine, Mapping
from typing import Any, Protocol

from backend.errors import GENERIC_ERROR, CommandError, CommandNotFound, ProtocolError

from .protocol import Channel, JSONLineServer, Runstate

log = logging.getLogger(__name__)

_ALLOWED_MEMBERS = frozenset({"execute", "arguments", "id", "control"})
MAX_IN_FLIGHT = 64
"""Commands one client may have running at once (dm-waits included)."""


class Dispatcher(Protocol):
    """What runs a validated command name: the command registry bound to a daemon."""

    async def execute(self, name: str, arguments: Mapping[str, object]) -> object:
        """Run a command; raise CommandError (with its QMP class) when it fails."""
        ...


class Phase(enum.Enum):
    """A session's QMP phase: only ``qmp_capabilities`` is allowed while NEGOTIATION."""

    NEGOTIATION = "negotiation"
    COMMAND = "command"


def timestamp() -> dict[str, int]:
    """QMP's event timestamp: wall-clock seconds and microseconds."""
    now = time.time_ns() // 1000
    return {"seconds": now // 1_000_000, "microseconds": now % 1_000_000}


class Session:
    """One client: its phase, its channel, its commands still running."""

    def __init__(self, server: QMPServer, channel: Channel) -> None:
        self.server = server
        self.channel = channel
        self.phase = Phase.NEGOTIATION
        self.in_flight = 0
        self._room = asyncio.Event()

    async def run(self) -> None:
        self.channel.send(self.server.greeting())
        while True:
            while self.in_flight >= MAX_IN_FLIGHT:
                self._room.clear()
                await self._room.wait()
            try:
                msg = await self.channel.recv()
            except EOFError:
                return
            except ProtocolError as e:
                self.channel.send(_error(GENERIC_ERROR, str(e), None))
                continue
            if self.channel.closing:
                return  # disconnected (it did not read its replies): read no more
            self._handle(msg)

    def _handle(self, msg: object) -> None:
        msg_id = msg.get("id") if isinstance(msg, dict) else None
        try:
            name, arguments = _parse_request(msg)
        except CommandError as e:
            self.channel.send(_error(e.error_class, e.desc, msg_id))
            return
        if name == "qmp_capabilities":
            self.channel.send(self._negotiate(arguments, msg_id))
            return
        if self.phase is Phase.NEGOTIATION:
            self.channel.send(_error(CommandNotFound.error_class,
                                     "Expecting capabilities negotiation with"
                                     " 'qmp_capabilities'", msg_id))
            return
        self.in_flight += 1
        self.server.run_command(self._execute(name, arguments, msg_id),
                                f"qmp-{self.channel.ident}-{name[:64]}")

    def _negotiate(self, arguments: Mapping[str, object], msg_id: object) -> dict[str, Any]:
        if self.phase is Phase.COMMAND:
            return _error(CommandNotFound.error_class,
                          "Capabilities negotiation is already complete, command ignored",
                          msg_id)
        extra = [k for k in arguments if k != "enable"]
        if extra:
            return _error(GENERIC_ERROR, f"qmp_capabilities: unexpected argument {extra[0]!r}",
                          msg_id)
        enable = arguments.get("enable", [])
        if not isinstance(enable, list):
            return _error(GENERIC_ERROR, "qmp_capabilities: 'enable': expected array", msg_id)
        if enable:
            return _error(GENERIC_ERROR, f"Capability '{enable[0]}' not available", msg_id)
        self.phase = Phase.COMMAND
        return _reply({}, msg_id)

    async def _execute(self, name: str, arguments: Mapping[str, object], msg_id: object) -> None:
        try:
            result = await self.server.dispatcher.execute(name, arguments)
        except CommandError as e:
            log.info("client %d: %s failed: %s", self.channel.ident, _cut(name), e.desc)
            self.channel.send(_error(e.error_class, e.desc, msg_id))
        else:
            self.channel.send(_reply(result, msg_id))
        finally:
            self.in_flight -= 1
            self._room.set()


class QMPServer:
    """The monitor: a QMP endpoint on a unix socket, serving any number of clients."""

    def __init__(self, dispatcher: Dispatcher, *, version: tuple[int, int, int],
                 package: str = "vudm") -> None:
        self.dispatcher = dispatcher
        self.version = version
        self.package = package
        self._transport = JSONLineServer(self._session, name="qmp")
        self._sessions: set[Session] = set()
        self._commands: set[asyncio.Task[None]] = set()

    @property
    def runstate(self) -> Runstate:
        return self._transport.runstate

    @property
    def clients(self) -> int:
        return len(self._sessions)

    async def start(self, path: str | os.PathLike[str],
                    sock: socket.socket | None = None) -> None:
        await self._transport.start(path, sock)

    async def stop(self) -> None:
        """Stop listening, end every session and cancel the commands still running."""
        if self._transport.runstate is Runstate.RUNNING:
            await self._transport.stop()
        for task in list(self._commands):
            task.cancel()
        if self._commands:
            await asyncio.gather(*self._commands, return_exceptions=True)

    def run_command(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        """Run one command in its own task. A client that goes away does not cancel its
        commands (a half-done suspend would be undone behind its back); only stop does."""
        task = asyncio.create_task(coro, name=name)
        self._commands.add(task)
        task.add_done_callback(self._commands.discard)

    def greeting(self) -> dict[str, Any]:
        major, minor, micro = self.version
        return {"QMP": {"version": {"qemu": {"major": major, "minor": minor, "micro": micro},
                                    "package": self.package},
                        "capabilities": []}}

    def emit(self, event: str, data: Mapping[str, object]) -> None:
        """Send an event to every negotiated client, now."""
        msg = {"event": event, "data": dict(data), "timestamp": timestamp()}
        log.debug("event %s %s", event, data)
        for session in self._sessions:
            if session.phase is Phase.COMMAND:
                session.channel.send(msg)

    async def _session(self, channel: Channel) -> None:
        session = Session(self, channel)
        self._sessions.add(session)
        try:
            await session.run()
        finally:
            self._sessions.discard(session)
            with contextlib.suppress(Exception):
                await channel.drain()


def _parse_request(msg: object) -> tuple[str, Mapping[str, object]]:
    """The command name and arguments of a request, or QEMU's complaint about it."""
    if not isinstance(msg, dict):
        raise CommandError("QMP input must be a JSON object")
    if "exec-oob" in msg:
        raise CommandError("QMP input member 'exec-oob' is unexpected:"
                           " out-of-band execution is not supported")
    for key in msg:
        if key not in _ALLOWED_MEMBERS:
            raise CommandError(f"QMP input member '{_cut(key)}' is unexpected")
    if "execute" not in msg:
        raise CommandError("QMP input lacks member 'execute'")
    name = msg["execute"]
    if not isinstance(name, str):
        raise CommandError("QMP input member 'execute' must be a string")
    arguments = msg.get("arguments", {})
    if not isinstance(arguments, dict):
        raise CommandError("QMP input member 'arguments' must be an object")
    return name, arguments


def _cut(text: str, limit: int = 128) -> str:
    """A client's own string in an error message, cut (a 1 MiB name is no message)."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _reply(result: object, msg_id: object) -> dict[str, Any]:
    out: dict[str, Any] = {"return": result}
    if msg_id is not None:
        out["id"] = msg_id
    return out


def _error(error_class: str, desc: str, msg_id: object) -> dict[str, Any]:
    out: dict[str, Any] = {"error": {"class": error_class, "desc": desc}}
    if msg_id is not None:
        out["id"] = msg_id
    return out
