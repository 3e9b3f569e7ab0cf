"""One libvhost-user device context (VuDev) driven from an asyncio loop.

``VuDevice`` owns the C memory (the VuDev and its VuDevIface), the CFUNCTYPE trampolines
(kept referenced for the device's life) and the fd watches, which are
``loop.add_reader`` registrations. Every trampoline catches everything: a Python
exception escaping into C is printed and swallowed by ctypes, which once ate the
library's post-reconnect self-kick and hung guest I/O forever.

The device personality (features, config space, queue processing) is a
``VirtioDeviceHandler``; the transport (accepting connections, tearing them down) is the
``on_disconnect`` callback. All vu_* calls happen on the loop's thread.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import struct
from collections.abc import Callable
from typing import Any, Protocol

from backend.errors import VhostUserError
from backend.vhost import libvhost
from backend.vhost.abi import VhostUserMsg, VuDev, VuDevIface, VuVirtq
from backend.vhost.libvhost import LibVhostUser

log = logging.getLogger(__name__)

_CONFIG_CHANGE = struct.Struct("<III")
"""A vhost-user message header: request, flags, payload size."""


class VirtioDeviceHandler(Protocol):
    """The device side of a VuDevice: what QEMU's VuDevIface asks a device for."""

    def get_features(self) -> int: ...

    def set_features(self, features: int) -> None: ...

    def get_protocol_features(self) -> int: ...

    def get_config(self, length: int) -> bytes: ...

    def set_config(self, data: bytes, offset: int, flags: int) -> bool: ...

    def queue_set_started(self, vudev: VuDevice, qidx: int, started: bool) -> None: ...

    def queue_kicked(self, qidx: int) -> None:
        """The guest kicked queue ``qidx`` (its kick eventfd already read); never raises."""
        ...


class VuDevice:
    """A VuDev bound to one connected socket at a time (``init`` ... ``deinit``).

    ``on_disconnect(reason)`` is called (once per connection) when the front-end goes
    away or the library panics; the owner then tears the connection down.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        handler: VirtioDeviceHandler,
        max_queues: int,
        on_disconnect: Callable[[str], None],
        *,
        name: str = "vhost-user",
        lib: LibVhostUser | None = None,
    ) -> None:
        self.lib = lib or libvhost.load()
        self.loop = loop
        self.handler = handler
        self.max_queues = max_queues
        self.log = log.getChild(name)
        self._on_disconnect = on_disconnect
        self._dev = VuDev()
        self.ptr: int = ctypes.addressof(self._dev)
        self._watched: dict[int, Callable[[], None]] = {}
        self._connected = False
        self._disconnect_reported = False
        # Trampolines: referenced here for as long as the library may call them.
        self._cb_panic = libvhost.PanicCb(self._panic)
        self._cb_set_watch = libvhost.SetWatchCb(self._set_watch)
        self._cb_remove_watch = libvhost.RemoveWatchCb(self._remove_watch)
        self._cb_get_features = libvhost.GetFeaturesCb(self._get_features)
        self._cb_set_features = libvhost.SetFeaturesCb(self._set_features)
        self._cb_get_protocol_features = libvhost.GetFeaturesCb(self._get_protocol_features)
        self._cb_process_msg = libvhost.ProcessMsgCb(self._process_msg)
        self._cb_queue_set_started = libvhost.QueueSetStartedCb(self._queue_set_started)
        self._cb_get_config = libvhost.GetConfigCb(self._get_config)
        self._cb_set_config = libvhost.SetConfigCb(self._set_config)
        self._iface = VuDevIface(
            get_features=_fnptr(self._cb_get_features),
            set_features=_fnptr(self._cb_set_features),
            get_protocol_features=_fnptr(self._cb_get_protocol_features),
            set_protocol_features=None,
            process_msg=_fnptr(self._cb_process_msg),
            queue_set_started=_fnptr(self._cb_queue_set_started),
            queue_is_processed_in_order=None,
            get_config=_fnptr(self._cb_get_config),
            set_config=_fnptr(self._cb_set_config),
        )

    # -- lifecycle (transport side) ---------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def broken(self) -> bool:
        """The library gave up on this connection (it called panic)."""
        return bool(self._dev.broken)

    def init(self, sock_fd: int) -> None:
        """Bind the device to a connected, blocking socket; the library owns it from now."""
        if self._connected:
            raise VhostUserError("vu_init on a device that is still connected")
        self._disconnect_reported = False
        ok = self.lib.vu_init(
            self.ptr, self.max_queues, sock_fd, self._cb_panic, None,
            self._cb_set_watch, self._cb_remove_watch, ctypes.addressof(self._iface),
        )
        if not ok:
            raise VhostUserError("vu_init failed")
        self._connected = True

    def dispatch(self) -> bool:
        """Handle one message from the front-end; False when the connection is unusable."""
        ok = bool(self.lib.vu_dispatch(self.ptr))
        return ok and not self._disconnect_reported and not self._dev.broken

    def deinit(self) -> None:
        """Unmap guest memory, close every fd (the socket too) and forget the watches."""
        if not self._connected:
            return
        self._connected = False
        self.lib.vu_deinit(self.ptr)
        for fd in list(self._watched):
            self._remove_watch(self.ptr, fd)

    def notify_config_change(self) -> bool:
        """Tell the front-end its config space changed (a resized disk): the backend
        request VHOST_USER_SLAVE_CONFIG_CHANGE_MSG on the backend channel, which QEMU
        turns into a virtio config-change interrupt. QEMU 7.2's libvhost-user has no
        vu_config_change_msg yet, so the 12-byte header (no payload, no reply asked) is
        written here; nothing else writes that channel (libvhost-user does only for host
        notifiers, unused here). False when the front-end gave no backend channel."""
        fd = self._dev.slave_fd
        if not self._connected or fd < 0:
            return False
        header = _CONFIG_CHANGE.pack(libvhost.VHOST_USER_SLAVE_CONFIG_CHANGE_MSG,
                                     libvhost.VHOST_USER_VERSION, 0)
        try:
            sent = os.write(fd, header)
        except OSError as e:
            self.log.warning("config change not sent: %s", e.strerror)
            return False
        return sent == len(header)

    def get_queue(self, qidx: int) -> int:
        """Address of VuVirtq ``qidx`` (valid from init to deinit)."""
        vq: int = self.lib.vu_get_queue(self.ptr, qidx)
        return vq

    # -- trampolines (C -> Python); none may raise --------------------------------------

    def _report_disconnect(self, reason: str) -> None:
        if self._disconnect_reported:
            return
        self._disconnect_reported = True
        self.loop.call_soon(self._on_disconnect, reason)

    def _panic(self, _dev: int, err: bytes | None) -> None:
        try:
            reason = (err or b"").decode(errors="replace")
            if reason != "disconnect":
                self.log.error("libvhost-user panic: %s", reason)
            self._report_disconnect(reason)
        except BaseException:
            self.log.exception("panic callback failed")

    def _set_watch(self, _dev: int, fd: int, condition: int, cb: int, data: int | None) -> None:
        # Called twice for one kick fd (queue handler + SET_VRING_KICK): replace, not add.
        try:
            if not condition & libvhost.VU_WATCH_IN:
                self.log.warning("watch on fd %d for condition %#x ignored", fd, condition)
                return
            qidx = data or 0
            if qidx < self.max_queues and fd == self._kick_fd(qidx):
                self._watched[fd] = kicked = self._kick_reader(fd, qidx)
                self.loop.add_reader(fd, kicked)
                return
            func = libvhost.WatchCall(cb)
            ptr, cond = self.ptr, libvhost.VU_WATCH_IN

            def ready() -> None:
                try:
                    func(ptr, cond, data)
                except BaseException:
                    self.log.exception("watch callback for fd %d failed", fd)

            self._watched[fd] = ready
            self.loop.add_reader(fd, ready)
        except BaseException:
            self.log.exception("set_watch(%d) failed", fd)

    def _kick_fd(self, qidx: int) -> int:
        kick_fd: int = VuVirtq.from_address(self.lib.vu_get_queue(self.ptr, qidx)).kick_fd
        return kick_fd

    def _kick_reader(self, fd: int, qidx: int) -> Callable[[], None]:
        """What the library's own watch callback (vu_kick_cb) does, in Python: read the
        kick eventfd, then run the queue. The library watches a kick fd only while the
        queue has a handler, so the handler is there. Saves the C round trip per kick
        (a ctypes call into vu_kick_cb calling back through a CFUNCTYPE)."""
        read, kicked = os.eventfd_read, self.handler.queue_kicked

        def ready() -> None:
            try:
                read(fd)
            except BlockingIOError:
                return  # another reader took the count: nothing to do
            except OSError as e:  # vu_kick_cb panics and stops watching
                self.log.error("libvhost-user panic: kick eventfd_read(): %s", e.strerror)
                self._report_disconnect(f"kick eventfd_read(): {e.strerror}")
                self._remove_watch(self.ptr, fd)
                return
            kicked(qidx)

        return ready

    def _remove_watch(self, _dev: int, fd: int) -> None:
        # Called for fds never watched too: idempotent.
        try:
            if self._watched.pop(fd, None) is not None:
                self.loop.remove_reader(fd)
        except BaseException:
            self.log.exception("remove_watch(%d) failed", fd)

    def _get_features(self, _dev: int) -> int:
        try:
            return self.handler.get_features()
        except BaseException:
            self.log.exception("get_features failed")
            return 0

    def _set_features(self, _dev: int, features: int) -> None:
        try:
            self.handler.set_features(features)
        except BaseException:
            self.log.exception("set_features failed")

    def _get_protocol_features(self, _dev: int) -> int:
        try:
            return self.handler.get_protocol_features()
        except BaseException:
            self.log.exception("get_protocol_features failed")
            return 0

    def _process_msg(self, _dev: int, msg: int, do_reply: Any) -> int:
        # The library answers VHOST_USER_NONE (a zeroed message: the peer hung up) with
        # exit(0). Claim it here and turn it into a disconnect.
        try:
            if VhostUserMsg.from_address(msg).request == libvhost.VHOST_USER_NONE:
                do_reply[0] = 0
                self._report_disconnect("disconnect")
                return 1
            return 0
        except BaseException:
            self.log.exception("process_msg failed")
            return 0

    def _queue_set_started(self, _dev: int, qidx: int, started: bool) -> None:
        try:
            self.handler.queue_set_started(self, qidx, bool(started))
        except BaseException:
            self.log.exception("queue_set_started(%d, %s) failed", qidx, started)

    def _get_config(self, _dev: int, config: int, length: int) -> int:
        try:
            raw = self.handler.get_config(length)
            ctypes.memmove(config, raw, min(len(raw), length))
            return 0
        except BaseException:
            self.log.exception("get_config failed")
            return -1

    def _set_config(self, _dev: int, data: int, offset: int, size: int, flags: int) -> int:
        try:
            return 0 if self.handler.set_config(ctypes.string_at(data, size), offset, flags) else -1
        except BaseException:
            self.log.exception("set_config failed")
            return -1


def _fnptr(cfunc: Any) -> int:
    """The C address of a CFUNCTYPE object, for a struct's void* slot."""
    address: int = ctypes.cast(cfunc, ctypes.c_void_p).value or 0
    return address
