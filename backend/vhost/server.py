"""Generic vhost-user transport: a unix socket, one front-end at a time, reconnection.

The analogue of QEMU's ``util/vhost-user-server.c``. It knows nothing about block
devices: it listens, hands each accepted connection to a ``VuDevice``, dispatches the
front-end's messages from the loop, and on disconnect (the front-end hung up, the library
panicked, or ``disconnect()`` was asked for) stops the device, waits until nothing the
device started is still in flight, unmaps guest memory with ``vu_deinit`` and listens
again. A front-end using ``reconnect=1`` with inflight tracking then gets its in-flight
requests resubmitted on the new connection, with no EIO.

Connection lifecycle::

    LISTENING --accept--> CONNECTED --peer gone / panic / disconnect()--> DRAINING
        ^                                                                   |
        +--------------------- vu_deinit, on_disconnected -----------------+
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from backend.errors import VhostUserError
from backend.sockets import claim_socket_path
from backend.vhost.libvhost import LibVhostUser
from backend.vhost.vudev import VirtioDeviceHandler, VuDevice

log = logging.getLogger(__name__)


class ServedDevice(VirtioDeviceHandler, Protocol):
    """A device the server can stop and drain before it unmaps guest memory."""

    def connection_lost(self) -> None:
        """Stop taking requests from the rings; in-flight ones still complete."""
        ...

    async def wait_idle(self) -> None:
        """Return when no request of this device is in flight."""
        ...


class ServerState(enum.Enum):
    STOPPED = "stopped"
    LISTENING = "listening"
    CONNECTED = "connected"
    DRAINING = "draining"
    CLOSED = "closed"


class VhostUserServer:
    """Serve one ``ServedDevice`` on a unix socket path, to one front-end at a time."""

    def __init__(
        self,
        path: str | Path,
        device: ServedDevice,
        *,
        max_queues: int,
        loop: asyncio.AbstractEventLoop | None = None,
        on_connected: Callable[[], None] | None = None,
        on_disconnected: Callable[[], None] | None = None,
        name: str = "vhost-user",
        lib: LibVhostUser | None = None,
        listener: socket.socket | None = None,
    ) -> None:
        self.path = Path(path)
        # A listening socket handed over by whoever started the daemon (an inherited fd,
        # socket activation): served as it is, never bound or unlinked by us.
        self._adopted = listener
        self.device = device
        self.loop = loop or asyncio.get_running_loop()
        self.log = log.getChild(name)
        self.state = ServerState.STOPPED
        self._on_connected = on_connected
        self._on_disconnected = on_disconnected
        self.vudev = VuDevice(self.loop, device, max_queues, self._peer_gone, name=name,
                              lib=lib)
        self._listener: socket.socket | None = None
        self._listener_ino: int | None = None
        self._conn_fd = -1
        self._teardown: asyncio.Task[None] | None = None
        self._drain_timeout: float | None = None

    # -- public -------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self.state is ServerState.CONNECTED

    def start(self) -> None:
        """Listen on ``path`` (mode 0600). A path another server answers on is refused."""
        if self.state is not ServerState.STOPPED:
            raise VhostUserError(f"{self.path}: server is {self.state.value}, not stopped")
        if self._adopted is not None:
            sock, self._adopted = self._adopted, None
            sock.setblocking(False)
            self._listener = sock
            self.state = ServerState.LISTENING
            self.loop.add_reader(sock.fileno(), self._accept)
            self.log.info("listening on an inherited socket (%s)", self.path)
            return
        _claim_path(self.path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            # Linux creates the socket file with the socket inode's mode (minus umask):
            # restricting it before bind leaves no window with a wider mode.
            os.fchmod(sock.fileno(), 0o600)
            sock.bind(str(self.path))
            sock.listen(1)
        except OSError as exc:
            sock.close()
            raise VhostUserError(f"{self.path}: cannot listen: {exc}") from exc
        sock.setblocking(False)
        self._listener = sock
        self._listener_ino = os.stat(self.path).st_ino
        self.state = ServerState.LISTENING
        self.loop.add_reader(sock.fileno(), self._accept)
        self.log.info("listening on %s", self.path)

    def disconnect(self, reason: str = "disconnect requested") -> None:
        """Drop the current front-end (it may reconnect); nothing happens if none."""
        if self.state is ServerState.CONNECTED:
            self._begin_teardown(reason)

    async def close(self, drain_timeout: float | None = 30.0) -> None:
        """Stop listening, remove the socket path, drop the front-end after draining.

        If in-flight requests have not completed after ``drain_timeout`` seconds, guest
        memory is unmapped anyway (their late completions are discarded) and an error
        is logged.
        """
        if self.state in (ServerState.CLOSED, ServerState.STOPPED):
            self.state = ServerState.CLOSED
            return
        self._drain_timeout = drain_timeout
        self._stop_listening()
        if self.state is ServerState.CONNECTED:
            self._begin_teardown("server closing")
        if self._teardown is not None:
            await asyncio.shield(self._teardown)
        self.state = ServerState.CLOSED
        self.log.info("closed %s", self.path)

    # -- connection handling ------------------------------------------------------------

    def _accept(self) -> None:
        assert self._listener is not None
        try:
            conn, _ = self._listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self.log.error("accept on %s failed: %s", self.path, exc)
            return
        # The library loops on EAGAIN and closes the fd in vu_deinit: give it a
        # blocking fd it owns.
        conn.setblocking(True)
        fd = conn.detach()
        try:
            self.vudev.init(fd)
        except VhostUserError as exc:
            os.close(fd)
            self.log.error("%s", exc)
            return
        self._conn_fd = fd
        self.loop.remove_reader(self._listener.fileno())
        self.loop.add_reader(fd, self._dispatch)
        self.state = ServerState.CONNECTED
        self.log.info("front-end connected")
        self._notify(self._on_connected)

    def _dispatch(self) -> None:
        try:
            ok = self.vudev.dispatch()
        except BaseException:
            self.log.exception("vu_dispatch failed")
            ok = False
        if not ok and self.state is ServerState.CONNECTED:
            self._begin_teardown("front-end gone" if not self.vudev.broken else "broken")

    def _peer_gone(self, reason: str) -> None:
        if self.state is ServerState.CONNECTED:
            self._begin_teardown(reason)

    def _begin_teardown(self, reason: str) -> None:
        self.log.info("front-end disconnected (%s); draining", reason)
        self.state = ServerState.DRAINING
        if self._conn_fd >= 0:
            self.loop.remove_reader(self._conn_fd)
        try:
            self.device.connection_lost()
        except BaseException:
            self.log.exception("connection_lost failed")
        self._teardown = self.loop.create_task(self._finish_teardown())

    async def _finish_teardown(self) -> None:
        try:
            await asyncio.wait_for(self.device.wait_idle(), self._drain_timeout)
        except TimeoutError:
            self.log.error("in-flight requests did not drain within %ss; unmapping anyway",
                           self._drain_timeout)
        self.vudev.deinit()  # closes the connection's fd
        self._conn_fd = -1
        self._teardown = None
        self._notify(self._on_disconnected)
        if self._listener is not None:
            self.state = ServerState.LISTENING
            self.loop.add_reader(self._listener.fileno(), self._accept)
        else:
            self.state = ServerState.CLOSED

    def _stop_listening(self) -> None:
        if self._listener is None:
            return
        self.loop.remove_reader(self._listener.fileno())
        self._listener.close()
        self._listener = None
        with contextlib.suppress(OSError):
            # Remove the path only if it is still our socket, not a successor's.
            if self._listener_ino is not None and os.stat(self.path).st_ino == self._listener_ino:
                self.path.unlink()

    def _notify(self, callback: Callable[[], None] | None) -> None:
        if callback is None:
            return
        try:
            callback()
        except BaseException:
            self.log.exception("connection callback failed")


def _claim_path(path: Path) -> None:
    """Make ``path`` free for a new socket: refuse a live one, remove a stale one."""
    try:
        claim_socket_path(path)
    except OSError as exc:
        raise VhostUserError(str(exc)) from exc
