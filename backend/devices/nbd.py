"""``nbd+unix:///export?socket=PATH`` and ``nbd://host:port/export``: a path to a real
NBD server (qemu-storage-daemon, qemu-nbd).

One connection, many requests in flight, matched by cookie. Writes go out with sendmsg
on memoryviews of the guest buffers, and read replies are received straight into them
(zero copy). When the connection drops, every request in flight fails at once with
ENOLINK, and so does every later one until ``connect`` succeeds again: that is what lets
multipath fail the path immediately, and the path checker reinstate it.

A connection can also hang: a partitioned link or a frozen server keeps the TCP
connection open and answers nothing. Like the kernel nbd driver's ``timeout``, each
request must be answered within ``timeout`` seconds (``?timeout=S`` in the URI, default
30, 0 for none); the first one that is not drops the connection, so every request in
flight ends with ENOLINK and multipath retries it on another path. The path checker
drops a connection the same way when its probe times out (``disconnect``).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ctypes
import logging
import socket
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from ..blockio import BlockDeviceBase, Completion, IoVec, Op, Status
from ..errors import DeviceError
from ..limits import show
from . import nbd_proto as proto
from .uri import check_decoded

log = logging.getLogger(__name__)

_CMD = {
    Op.READ: proto.CMD_READ,
    Op.WRITE: proto.CMD_WRITE,
    Op.FLUSH: proto.CMD_FLUSH,
    Op.DISCARD: proto.CMD_TRIM,
    Op.WRITE_ZEROES: proto.CMD_WRITE_ZEROES,
}
_NEEDS_FLAG = {
    Op.FLUSH: proto.TF_SEND_FLUSH,
    Op.DISCARD: proto.TF_SEND_TRIM,
    Op.WRITE_ZEROES: proto.TF_SEND_WRITE_ZEROES,
}


DEFAULT_TIMEOUT = 30.0
"""Seconds a request may stay unanswered before the connection is dropped (the kernel
nbd driver's default)."""


@dataclass(frozen=True)
class NbdAddress:
    """Where an NBD export is: a unix socket path, or a TCP host and port."""

    export: str
    unix_path: str | None = None
    host: str | None = None
    port: int = 10809
    timeout: float = DEFAULT_TIMEOUT
    """Per-request timeout in seconds (0: none)."""

    @classmethod
    def from_uri(cls, uri: str) -> NbdAddress:
        u = urlsplit(uri)
        export = unquote(u.path.lstrip("/"))
        query = parse_qs(u.query)
        timeout = _timeout_arg(uri, query.pop("timeout", None))
        if u.scheme == "nbd+unix":
            sock = query.pop("socket", None)
            if not sock:
                raise DeviceError(f"bad device URI {show(uri)}: nbd+unix needs ?socket=PATH")
            _no_more_args(uri, query)
            return cls(export=check_decoded(uri, "export name", export),
                       unix_path=check_decoded(uri, "socket path", sock[0]), timeout=timeout)
        if u.scheme == "nbd":
            if not u.hostname:
                raise DeviceError(f"bad device URI {show(uri)}: nbd:// needs a host")
            try:
                port = u.port or 10809
            except ValueError as e:
                raise DeviceError(f"bad device URI {show(uri)}: {e}") from e
            _no_more_args(uri, query)
            return cls(export=check_decoded(uri, "export name", export),
                       host=u.hostname, port=port, timeout=timeout)
        raise DeviceError(f"bad device URI {show(uri)}: not an nbd URI")

    def __str__(self) -> str:
        where = self.unix_path or f"{self.host}:{self.port}"
        return f"{where}/{self.export}"


def _timeout_arg(uri: str, values: list[str] | None) -> float:
    if not values:
        return DEFAULT_TIMEOUT
    text = values[-1]
    try:
        timeout = float(text)
    except ValueError:
        timeout = -1.0
    if not 0 <= timeout <= 86400 or timeout != timeout:
        raise DeviceError(f"bad device URI {show(uri)}: timeout={text!r} is not a number of "
                          f"seconds from 0 (none) to 86400")
    return timeout


def _no_more_args(uri: str, query: dict[str, list[str]]) -> None:
    if query:
        raise DeviceError(f"bad device URI {show(uri)}: unknown argument(s) "
                          f"{', '.join(sorted(query))} (nbd takes socket= and timeout=)")


class _Pending:
    __slots__ = ("deadline", "done", "iovecs", "op")

    def __init__(self, op: Op, iovecs: Sequence[IoVec], done: Completion,
                 deadline: float) -> None:
        self.op = op
        self.iovecs = iovecs
        self.done = done
        self.deadline = deadline


def _views(iovecs: Sequence[IoVec]) -> list[memoryview]:
    return [memoryview((ctypes.c_char * ln).from_address(base)).cast("B")
            for base, ln in iovecs]


class NbdDevice(BlockDeviceBase):
    """A BlockDevice over one NBD connection; see the module docstring."""

    def __init__(self, name: str, address: NbdAddress, *, read_only: bool = False,
                 loop: asyncio.AbstractEventLoop | None = None, size: int = 0) -> None:
        # the size is known before connecting: a restored, disconnected path
        super().__init__(name, size, read_only)
        self.address = address
        self._loop = loop or asyncio.get_running_loop()
        self._sock: socket.socket | None = None
        self._flags = 0
        self._in_flight: dict[int, _Pending] = {}
        self._cookie = 0
        self._out: collections.deque[memoryview] = collections.deque()
        self._writing = False
        # receive state: a reply header, then maybe read data into a request's buffers
        self._hdr = bytearray(proto.SIMPLE_REPLY.size)
        self._hdr_got = 0
        self._data: list[memoryview] = []
        self._data_cookie = 0
        self._closed = False
        self._timer: asyncio.TimerHandle | None = None
        self.timeouts = 0
        """Connections dropped because a request went unanswered for ``timeout`` s."""

    # -- BlockDevice ---------------------------------------------------------------

    @property
    def read_only(self) -> bool:
        return self._read_only or bool(self._flags & proto.TF_READ_ONLY)

    @property
    def connected(self) -> bool:
        return self._sock is not None

    def submit(self, op: Op, offset: int, length: int, iovecs: Sequence[IoVec],
               done: Completion) -> None:
        if self._sock is None:
            done(Status.ENOLINK)
            return
        if op is not Op.READ and op is not Op.FLUSH and self.read_only:
            done(Status.EROFS)
            return
        need = _NEEDS_FLAG.get(op)
        if need is not None and not self._flags & need:
            # a server that cannot flush has nothing volatile to flush
            done(Status.OK if op is Op.FLUSH else Status.EOPNOTSUPP)
            return
        self._cookie += 1
        cookie = self._cookie
        timeout = self.address.timeout
        self._in_flight[cookie] = _Pending(op, iovecs, done,
                                          self._loop.time() + timeout if timeout else 0.0)
        if timeout and self._timer is None:
            self._timer = self._loop.call_at(self._in_flight[cookie].deadline,
                                             self._check_deadline)
        hdr = proto.request(_CMD[op], cookie, offset, 0 if op is Op.FLUSH else length)
        self._out.append(memoryview(hdr))
        if op is Op.WRITE:
            self._out.extend(_views(iovecs))
        if not self._writing:
            self._flush_out()

    # -- connection ----------------------------------------------------------------

    async def connect(self, timeout: float = 5.0) -> None:
        """Connect and negotiate (NBD_OPT_GO); raise DeviceError naming what failed."""
        if self._sock is not None:
            return
        try:
            sock = await asyncio.wait_for(self._handshake(), timeout)
        except TimeoutError as e:
            raise DeviceError(f"{self._name}: NBD {self.address}: handshake timed out") from e
        except OSError as e:
            raise DeviceError(f"{self._name}: NBD {self.address}: {e.strerror or e}") from e
        self._sock = sock
        self._hdr_got = 0
        self._data, self._data_cookie = [], 0
        self._loop.add_reader(sock.fileno(), self._on_readable)
        log.info("%s: connected to NBD %s (%d bytes)", self._name, self.address, self._size)

    async def _handshake(self) -> socket.socket:
        a = self.address
        if a.unix_path is not None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            target: Any = a.unix_path
        else:
            assert a.host is not None
            infos = await self._loop.getaddrinfo(a.host, a.port, type=socket.SOCK_STREAM)
            family, _, _, _, target = infos[0]
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        try:
            await self._loop.sock_connect(sock, target)
            sflags = proto.server_greeting(await self._recv_exact(sock, 18))
            await self._loop.sock_sendall(sock, proto.client_flags(sflags))
            await self._loop.sock_sendall(sock, proto.opt_go(a.export))
            size = flags = -1
            while True:
                rtype, length = proto.option_reply_header(await self._recv_exact(sock, 20))
                payload = await self._recv_exact(sock, length)
                if rtype & proto.REP_ERR_BIT:
                    raise proto.option_error(rtype, payload, a.export)
                if rtype == proto.REP_ACK:
                    break
                if rtype == proto.REP_INFO and payload[:2] == b"\0\0":
                    size = int.from_bytes(payload[2:10], "big")
                    flags = int.from_bytes(payload[10:12], "big")
            if size < 0:
                raise DeviceError(f"NBD export {a.export!r}: server sent no export size")
            if self._size and size != self._size:
                raise DeviceError(f"NBD export {a.export!r}: size changed from "
                                  f"{self._size} to {size} bytes")
            self._size, self._flags = size, flags
            return sock
        except BaseException:
            sock.close()
            raise

    async def _recv_exact(self, sock: socket.socket, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = await self._loop.sock_recv(sock, n - len(buf))
            if not chunk:
                raise DeviceError(f"NBD {self.address}: server closed during negotiation")
            buf += chunk
        return bytes(buf)

    def _check_deadline(self) -> None:
        """The oldest request in flight (the first in the dict: cookies only grow) sets
        the next deadline; one timer per device, re-armed lazily, costs nothing per I/O."""
        self._timer = None
        oldest = next(iter(self._in_flight.values()), None)
        if oldest is None:
            return
        if oldest.deadline <= self._loop.time():
            self.timeouts += 1
            log.warning("%s: NBD %s: a %s went unanswered for %gs: dropping the connection",
                        self._name, self.address, oldest.op.name, self.address.timeout)
            self.disconnect(f"request timed out after {self.address.timeout:g}s")
            return
        self._timer = self._loop.call_at(oldest.deadline, self._check_deadline)

    def disconnect(self, reason: str = "closed") -> None:
        """Drop the connection; every request in flight fails with ENOLINK (a path error:
        multipath fails the path and retries them on another)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        sock, self._sock = self._sock, None
        if sock is None:
            return
        self._loop.remove_reader(sock.fileno())
        if self._writing:
            self._loop.remove_writer(sock.fileno())
            self._writing = False
        if sock.family != socket.AF_UNIX:
            # abortive close (RST, send queue discarded): a plain close would keep
            # retransmitting the failed requests' writes, and once a partitioned link
            # heals they would land on the disk after multipath rewrote the same blocks
            # through another path
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
        self._out.clear()
        pending, self._in_flight = self._in_flight, {}
        log.info("%s: NBD %s connection lost (%s); failing %d request(s) in flight",
                 self._name, self.address, reason, len(pending))
        for req in pending.values():
            req.done(Status.ENOLINK)

    def close(self) -> None:
        self._closed = True
        self.disconnect("device closed")

    # -- sending -------------------------------------------------------------------

    def _flush_out(self) -> None:
        sock = self._sock
        while sock is not None and self._out:
            try:
                sent = sock.sendmsg(list(self._out)[:64])
            except BlockingIOError:
                break
            except OSError as e:
                self.disconnect(f"send failed: {e.strerror}")
                return
            while sent:
                head = self._out[0]
                if sent >= len(head):
                    sent -= len(head)
                    self._out.popleft()
                else:
                    self._out[0] = head[sent:]
                    sent = 0
        want = bool(self._out) and sock is not None
        if want and not self._writing and sock is not None:
            self._loop.add_writer(sock.fileno(), self._flush_out)
        elif not want and self._writing and sock is not None:
            self._loop.remove_writer(sock.fileno())
        self._writing = want

    # -- receiving -----------------------------------------------------------------

    def _on_readable(self) -> None:
        sock = self._sock
        while sock is self._sock and sock is not None:
            try:
                if self._data:
                    n = sock.recv_into(self._data[0])
                else:
                    n = sock.recv_into(memoryview(self._hdr)[self._hdr_got:])
            except BlockingIOError:
                return
            except OSError as e:
                self.disconnect(f"receive failed: {e.strerror}")
                return
            if n == 0:
                self.disconnect("server closed the connection")
                return
            if self._data:
                self._got_data(n)
            else:
                self._hdr_got += n
                if self._hdr_got == len(self._hdr):
                    self._hdr_got = 0
                    self._got_header()

    def _got_header(self) -> None:
        magic, error, cookie = proto.SIMPLE_REPLY.unpack(self._hdr)
        req = self._in_flight.get(cookie)
        if magic != proto.SIMPLE_REPLY_MAGIC or req is None:
            self.disconnect(f"protocol error (magic {magic:#x}, cookie {cookie})")
            return
        if req.op is Op.READ and error == 0:
            self._data = _views(req.iovecs)
            self._data_cookie = cookie
            if self._data:
                return
        del self._in_flight[cookie]
        req.done(Status.OK if error == 0 else _nbd_status(error))

    def _got_data(self, n: int) -> None:
        head = self._data[0]
        if n < len(head):
            self._data[0] = head[n:]
            return
        self._data.pop(0)
        if self._data:
            return
        self._in_flight.pop(self._data_cookie).done(Status.OK)


def _nbd_status(error: int) -> Status:
    # NBD errors are errno values (EPERM 1, EIO 5, ENOMEM 12, EINVAL 22, ENOSPC 28, ...)
    try:
        status = Status(error)
    except ValueError:
        return Status.EIO
    return status if status < Status.REQUEUE else Status.EIO


async def open_nbd(name: str, uri: str, read_only: bool,
                   loop: asyncio.AbstractEventLoop) -> NbdDevice:
    dev = NbdDevice(name, NbdAddress.from_uri(uri), read_only=read_only, loop=loop)
    await dev.connect()
    return dev


def open_nbd_offline(name: str, uri: str, read_only: bool, size: int,
                     loop: asyncio.AbstractEventLoop) -> NbdDevice:
    """An NBD device whose server is down, of a size known from before: every request
    fails with ENOLINK (multipath fails the path) until the checker's ``connect``
    succeeds, and that connect refuses a server whose export changed size."""
    return NbdDevice(name, NbdAddress.from_uri(uri), read_only=read_only, loop=loop,
                     size=size)
