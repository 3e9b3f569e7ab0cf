"""A generic asyncio server of JSON messages on a unix socket.

This is the transport half of the monitor (qemu.qmp's ``protocol.py`` is the model): it
knows sockets, framing (``framing.py``) and its own run state, nothing about QMP. Each
accepted client becomes a :class:`Channel` handed to a session coroutine; the QMP layer
on top (``qmp.py``) gives that coroutine its meaning.

The socket is created with mode 0600 (the umask is narrowed around ``bind``, so the
socket never exists with wider permissions), and a stale socket file left by a dead
daemon is replaced, while a socket a live daemon still answers on is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import json
import logging
import os
import socket
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar, cast

from backend.errors import ProtocolError, StateRefused
from backend.sockets import claim_socket_path

from .framing import JSONSplitter

log = logging.getLogger(__name__)

MESSAGE_LIMIT = 16 << 20
"""Longest message accepted (a big table is a long string)."""
READ_SIZE = 16384
WRITE_LIMIT = 4 << 20
"""Most bytes of replies and events kept for a client that does not read them; past
it the client is disconnected (it would otherwise cost the daemon without bound)."""


class Runstate(enum.Enum):
    """Where a server is in its life; methods refuse to run in the wrong one."""

    IDLE = "idle"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"


P = ParamSpec("P")
T = TypeVar("T")
S = TypeVar("S", bound="JSONLineServer")


def require(
    *states: Runstate,
) -> Callable[
    [Callable[Concatenate[S, P], Coroutine[Any, Any, T]]],
    Callable[Concatenate[S, P], Coroutine[Any, Any, T]],
]:
    """Refuse an async method unless the server is in one of ``states``."""

    def deco(
        fn: Callable[Concatenate[S, P], Coroutine[Any, Any, T]],
    ) -> Callable[Concatenate[S, P], Coroutine[Any, Any, T]]:
        @functools.wraps(fn)
        async def wrapper(self: S, *args: P.args, **kwargs: P.kwargs) -> T:
            if self.runstate not in states:
                want = " or ".join(s.name for s in states)
                raise StateRefused(f"{fn.__name__}: server is {self.runstate.name}, needs {want}")
            return await fn(self, *args, **kwargs)

        return cast(Callable[Concatenate[S, P], Coroutine[Any, Any, T]], wrapper)

    return deco


class Channel:
    """One connected client: JSON values in (QEMU's framing), one JSON line out each."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, ident: int):
        self._reader = reader
        self._writer = writer
        self.ident = ident
        self._splitter = JSONSplitter(MESSAGE_LIMIT)
        self._pending: deque[object] = deque()

    async def recv(self) -> object:
        """The next JSON value; EOFError at end of stream, ProtocolError if malformed."""
        while not self._pending:
            try:
                # Small reads: the splitter looks at every byte in Python, and a read
                # is what one loop turn spends on it.
                data = await self._reader.read(READ_SIZE)
            except ConnectionError as e:
                raise EOFError(f"client {self.ident}: {e}") from e
            if not data:
                raise EOFError(f"client {self.ident}: end of stream")
            self._pending.extend(self._splitter.feed(data))
        value = self._pending.popleft()
        if isinstance(value, ProtocolError):
            raise value
        return value

    def send(self, msg: Mapping[str, object]) -> None:
        """Queue one message; never blocks. A client whose unread messages pass
        :data:`WRITE_LIMIT` is disconnected. Only valid JSON goes out (no NaN or
        Infinity): a message that cannot be is logged and not sent."""
        if self._writer.is_closing():
            return
        try:
            data = json.dumps(msg, separators=(", ", ": "), allow_nan=False).encode()
        except (ValueError, TypeError, RecursionError) as e:
            log.error("client %d: a message that is not JSON was dropped: %s",
                      self.ident, e)
            return
        self._writer.write(data + b"\r\n")
        backlog = self._writer.transport.get_write_buffer_size()
        if backlog > WRITE_LIMIT:
            log.warning("client %d: %d bytes of replies unread (limit %d): disconnecting",
                        self.ident, backlog, WRITE_LIMIT)
            self._writer.transport.abort()

    async def drain(self) -> None:
        with contextlib.suppress(ConnectionError):
            await self._writer.drain()

    @property
    def closing(self) -> bool:
        return self._writer.is_closing()

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(ConnectionError):
            await self._writer.wait_closed()


SessionHandler = Callable[[Channel], Awaitable[None]]


class JSONLineServer:
    """Listen on a unix socket and run ``session(channel)`` for every client at once."""

    def __init__(self, session: SessionHandler, *, name: str = "monitor") -> None:
        self._session = session
        self.name = name
        self.runstate = Runstate.IDLE
        self.path: Path | None = None
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._channels: set[Channel] = set()
        self._next_ident = 0

    @require(Runstate.IDLE)
    async def start(self, path: str | os.PathLike[str],
                    sock: socket.socket | None = None) -> None:
        """Bind ``path`` (0600) and start accepting clients; with ``sock``, a listening
        socket handed over by the daemon's starter, serve that (``path`` only names it,
        and is never unlinked)."""
        if sock is None:
            self.path = Path(path)
            sock = _bind_private(self.path)
        self._server = await asyncio.start_unix_server(
            self._accept, sock=sock)
        self.runstate = Runstate.RUNNING
        log.info("%s: listening on %s", self.name, path)

    @require(Runstate.RUNNING)
    async def stop(self) -> None:
        """Stop listening, end every session, remove the socket file."""
        self.runstate = Runstate.STOPPING
        assert self._server is not None
        self._server.close()
        for ch in list(self._channels):
            await ch.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()
        if self.path is not None:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
        self.runstate = Runstate.STOPPED
        log.info("%s: stopped", self.name)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.runstate is not Runstate.RUNNING:
            writer.close()
            return
        self._next_ident += 1
        channel = Channel(reader, writer, self._next_ident)
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._channels.add(channel)
        log.debug("%s: client %d connected", self.name, channel.ident)
        try:
            await self._session(channel)
        except asyncio.CancelledError:
            if self.runstate is Runstate.RUNNING:
                raise
        except Exception:
            log.exception("%s: client %d: session failed", self.name, channel.ident)
        finally:
            self._channels.discard(channel)
            self._tasks.discard(task)
            await channel.close()
            log.debug("%s: client %d gone", self.name, channel.ident)


def _bind_private(path: Path) -> socket.socket:
    """A listening unix socket at ``path`` that only its owner may connect to."""
    claim_socket_path(path, "daemon")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        old = os.umask(0o177)
        try:
            sock.bind(str(path))
        finally:
            os.umask(old)
        os.chmod(path, 0o600)
        sock.listen(16)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock

