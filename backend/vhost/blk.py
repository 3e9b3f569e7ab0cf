"""vhost-user-blk: virtqueue elements in, bios to a BioSink, status bytes and used entries out.

The analogue of QEMU's ``block/export/virtio-blk-handler.c`` plus the export object.
``VirtioBlkDevice`` pops elements on a kick, decodes them with the pure
``virtio_blk.decode_request``, and submits a ``Bio`` whose iovecs are the guest's own
buffers (zero copy). When the bio ends it writes the status byte, pushes the element to
the used ring (push, not fill/flush: only push keeps the inflight region right for
reconnect) and notifies the guest, once per completion.

``VhostUserBlkExport`` ties a device to a ``VhostUserServer``: what the daemon and the
control plane create, start and close.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import socket
import struct
from collections.abc import Callable
from functools import partial
from pathlib import Path

from backend.blockio import (
    PLUG,
    SECTOR_SHIFT,
    Bio,
    BioSink,
    IovArray,
    IoVec,
    Op,
    Status,
    iov_from_bytes,
    iov_slice,
)
from backend.memory import MEMORY
from backend.vhost import libvhost
from backend.vhost.abi import VuVirtq
from backend.vhost.libvhost import LibVhostUser, Ptr
from backend.vhost.server import VhostUserServer
from backend.vhost.virtio_blk import (
    CONFIG_WCE_OFFSET,
    OUTHDR,
    OUTHDR_SIZE,
    S_OK,
    SEGMENT_SIZE,
    T_DISCARD,
    T_IN,
    T_OUT,
    T_WRITE_ZEROES,
    BlkGeometry,
    Rejection,
    data_iovecs,
    decode_request,
    status_address,
    status_byte,
)
from backend.vhost.vudev import VuDevice

log = logging.getLogger(__name__)

_ELEM = struct.Struct("<III4xQQ")  # index, out_num, in_num, in_sg*, out_sg*
_ELEM_SIZE = _ELEM.size  # 32: vu_queue_pop's sz, no private area
_ELEM_UNPACK_FROM = _ELEM.unpack_from
_IOV = struct.Struct("<QQ")
_TYPE = struct.Struct("<I")
_OUTHDR_UNPACK_FROM = OUTHDR.unpack_from
_OK = Status.OK
_READ, _WRITE = Op.READ, Op.WRITE
_MANY = 8
"""From this many data segments on, a request's iovecs are an IovArray."""


class VhostBio(Bio):
    """A guest request: the popped virtqueue element and its bio in one object.

    Built without ``Bio.__init__``: the iovecs are the guest's, kept as decoded (no
    copy), and the request was validated once, here at the edge (``validated``).
    ``done`` is a method here (status byte, used ring, notify), not a stored callback,
    so ending one allocates nothing; it cannot be reassigned. It reads its device's
    private state: the two classes are one unit, split only by lifetime.
    """

    __slots__ = ("device", "elem", "generation", "qidx", "status_addr", "used_len", "vq")
    validated = True

    def __init__(self, device: VirtioBlkDevice, qidx: int, vq: Ptr, elem: Ptr, op: Op,
                 sector: int, nr_sectors: int, iovecs: list[IoVec], status_addr: int,
                 used_len: int) -> None:
        self.op = op
        self.sector = sector
        self.nr_sectors = nr_sectors
        self.iovecs = iovecs
        self.preflush = False
        self.fua = op is _WRITE and not device.wce  # write cache off: every write is FUA
        self.private = None
        self.device = device
        self.qidx = qidx
        self.vq = vq
        self.elem: Ptr | None = elem
        self.status_addr = status_addr
        self.used_len = used_len
        self.generation = device.generation

    def done(self, status: Status) -> None:
        """Status byte, used ring, notify (loop thread): the device's side of a request's
        end, written here so that ending one is a single frame."""
        device = self.device
        try:
            elem = self.elem
            if elem is None:
                device.log.error("a request completed twice; ignored the second completion")
                return
            self.elem = None
            device.in_flight -= 1
            qidx = self.qidx
            if self.generation != device.generation or not device._started[qidx]:
                # Its rings are gone (memory unmapped, or the front-end stopped the queue):
                # pushing would write into memory that is no longer a ring. The inflight
                # region still lists it; a reconnecting front-end resubmits it.
                device.log.warning("a request completed after its queue stopped: not pushed")
                device.lib.free_elem(elem)
            else:
                # Also while draining after a disconnect: the rings are still mapped, and a
                # push keeps the inflight region exact for the next connection.
                MEMORY[self.status_addr] = S_OK if status is _OK else status_byte(status)
                lib, dev, vq = device.lib, device._dev_ptr, self.vq
                lib.push(dev, vq, elem, self.used_len)
                lib.free_elem(elem)
                # One notify per batch: completions reaped together (the reap holds the
                # PLUG) are pushed, then the guest is told once when the plug is released.
                if not device._notify_due[qidx]:
                    if PLUG.depth:  # PLUG.defer, inline
                        PLUG.flushes.append(device._notifiers[qidx])
                        device._notify_due[qidx] = True
                    else:
                        lib.notify(dev, vq)
            if device.in_flight == 0 and device._idle is not None:
                device._idle.set()
                device._idle = None
        except BaseException:
            log.exception("completing a request failed")


class VirtioBlkDevice:
    """virtio-blk request handling for one export, over whatever connection is current."""

    def __init__(
        self,
        sink: BioSink,
        *,
        writable: bool = True,
        num_queues: int = 1,
        serial: str = "",
        blk_size: int = 512,
        name: str = "vhost-user-blk",
        lib: LibVhostUser | None = None,
        on_resubmit: Callable[[int, int], None] | None = None,
    ) -> None:
        self.sink = sink
        self._on_resubmit = on_resubmit
        self.writable = writable
        self.num_queues = num_queues
        self.serial = serial.encode()[:20]
        self.blk_size = blk_size
        self.log = log.getChild(name)
        self.lib = lib or libvhost.load()
        self.wce = True
        """The guest's write cache setting (CONFIG_WCE); off: writes go out FUA."""
        self.geometry = self._geometry()
        self.generation = 0
        self.in_flight = 0
        self.rejected = 0
        self.resubmitted = 0
        """Requests the front-end's inflight region handed back after a reconnect."""
        self.queue_ios = [0] * num_queues
        """Requests popped from each virtqueue: which queues carried the guest's I/O."""
        self.config_changes = 0
        """Times the front-end was told of a new capacity."""
        self._idle: asyncio.Event | None = None
        """Made by wait_idle, set (and dropped) when in_flight reaches 0: only while
        someone waits, since an Event's clear and set are two Python calls per request
        at QD1."""
        self._running = False
        self._vudev: VuDevice | None = None
        self._dev = 0
        self._dev_ptr = Ptr(0)
        """The device for the request path's untyped calls (libvhost's Ptr)."""
        self._vqs = [0] * num_queues
        self._vq_ptrs = [Ptr(0) for _ in range(num_queues)]
        self._started = [False] * num_queues
        self._fresh = [False] * num_queues  # started, not yet kicked: report resubmits
        self._notify_due = [False] * num_queues
        """A notify of this queue is deferred to the release of the held PLUG."""
        self._notifiers = [partial(self._notify, q) for q in range(num_queues)]
        self._cb_queue = libvhost.QueueHandlerCb(self._queue_handler)
        self._cb_queue_ptr = ctypes.cast(self._cb_queue, ctypes.c_void_p).value

    def _geometry(self) -> BlkGeometry:
        return BlkGeometry(capacity=self.sink.size_sectors, writable=self.writable,
                           blk_size=self.blk_size, num_queues=self.num_queues,
                           wce=self.wce)

    # -- VuDevIface ---------------------------------------------------------------------

    def get_features(self) -> int:
        return self.geometry.features()

    def set_features(self, features: int) -> None:
        self.log.debug("features %#x", features)

    def get_protocol_features(self) -> int:
        # CONFIG is added by the library (we set both config callbacks); INFLIGHT_SHMFD
        # lets a reconnecting front-end have its in-flight requests resubmitted.
        return 1 << libvhost.VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD

    def get_config(self, length: int) -> bytes:
        # Re-read the size: the sink's table may have been reloaded since the last look.
        self.geometry = self._geometry()
        return self.geometry.config(length)

    def capacity_changed(self) -> bool:
        """Re-read the sink's size; if it changed, take the new geometry (so requests
        up to the new end are accepted) and tell the connected front-end, which raises
        a config-change interrupt: the guest sees the new capacity without a re-plug.
        Returns whether a front-end was told."""
        geometry = self._geometry()
        if geometry.capacity == self.geometry.capacity:
            return False
        self.log.info("capacity %d -> %d sectors", self.geometry.capacity,
                      geometry.capacity)
        self.geometry = geometry
        vudev = self._vudev
        if not self._running or vudev is None:
            return False
        told = vudev.notify_config_change()
        self.config_changes += told
        if not told:
            self.log.warning("front-end not told of the new capacity (no backend channel)")
        return told

    def set_config(self, data: bytes, offset: int, flags: int) -> bool:
        if offset == CONFIG_WCE_OFFSET and len(data) == 1 and data[0] in (0, 1):
            self.wce = bool(data[0])
            self.geometry = self._geometry()
            self.log.info("guest set the write cache %s", "on" if self.wce else "off")
            return True
        self.log.info("guest wrote %d config bytes at %d: not writable", len(data), offset)
        return False

    def queue_set_started(self, vudev: VuDevice, qidx: int, started: bool) -> None:
        if qidx >= self.num_queues:
            self.log.warning("queue %d started but only %d offered", qidx, self.num_queues)
            return
        if not self._running:
            self._attach(vudev)
        vq = vudev.get_queue(qidx)
        self._vqs[qidx] = vq
        self._vq_ptrs[qidx] = Ptr(vq)
        self._started[qidx] = started
        self._fresh[qidx] = started
        self.lib.vu_set_queue_handler(self._dev, vq, self._cb_queue_ptr if started else None)
        self.log.debug("queue %d %s", qidx, "started" if started else "stopped")

    # -- ServedDevice -------------------------------------------------------------------

    def _attach(self, vudev: VuDevice) -> None:
        self._vudev = vudev
        self._dev = vudev.ptr
        self._dev_ptr = Ptr(vudev.ptr)
        self._running = True
        self.generation += 1

    def connection_lost(self) -> None:
        self._running = False
        for qidx, vq in enumerate(self._vqs):
            if vq and self._started[qidx]:
                self.lib.vu_set_queue_handler(self._dev, vq, None)

    async def wait_idle(self) -> None:
        while self.in_flight:  # every waiter shares one Event
            if self._idle is None:
                self._idle = asyncio.Event()
            await self._idle.wait()
        # The server unmaps the rings next: late completions must not touch them.
        self.generation += 1
        self._vqs = [0] * self.num_queues
        self._started = [False] * self.num_queues

    # -- request path -------------------------------------------------------------------

    def _queue_handler(self, _dev: int, qidx: int) -> None:
        self.process_queue(qidx)

    def process_queue(self, qidx: int) -> None:
        """Pop and start every available request of queue ``qidx`` (called on a kick)."""
        pop = self.lib.pop
        dev, vq = self._dev_ptr, self._vq_ptrs[qidx]
        # Plugged: the requests of this kick reach the disk in one batch, right after
        # the last pop rather than a loop turn later. (``with PLUG``, spelled out.)
        plug = PLUG
        plug.depth += 1
        try:
            if self._fresh[qidx]:
                self._report_resubmits(qidx)
            while self._running and self._started[qidx]:
                elem = pop(dev, vq, _ELEM_SIZE)
                if not elem:
                    return
                try:
                    self._start(qidx, vq, elem)
                except BaseException:
                    # The element may be half-handled: fail it rather than lose it.
                    self.log.exception("request on queue %d failed to start", qidx)
                    self._finish(vq, elem, 0)
        except BaseException:
            self.log.exception("processing queue %d failed", qidx)
        finally:
            plug.depth -= 1
            if not plug.depth and plug.flushes:
                plug.unplug()

    queue_kicked = process_queue
    """A kick (VuDevice reads the kick fd itself and calls this straight)."""

    def _report_resubmits(self, qidx: int) -> None:
        """The first kick after a (re)connect: count what the inflight region handed
        back."""
        self._fresh[qidx] = False
        resubmit = VuVirtq.from_address(self._vqs[qidx]).resubmit_num
        if resubmit:
            self.resubmitted += resubmit
            self.log.info("queue %d: resubmitting %d requests in flight before the "
                          "reconnect", qidx, resubmit)
            if self._on_resubmit is not None:
                try:
                    self._on_resubmit(qidx, resubmit)
                except BaseException:
                    self.log.exception("resubmit callback failed")

    def _start(self, qidx: int, vq: Ptr, elem: Ptr) -> None:
        self.queue_ios[qidx] += 1
        # The element and its iovecs are the library's malloc, read in place (MEMORY).
        _index, out_num, in_num, in_sg_addr, out_sg_addr = _ELEM_UNPACK_FROM(
            MEMORY, elem.value or 0)  # never NULL: pop gave it
        if out_sg_addr == in_sg_addr + 16 * in_num:
            raw = MEMORY[in_sg_addr:in_sg_addr + 16 * (in_num + out_num)]
            iovs = list(_IOV.iter_unpack(raw))
        else:  # not how vu_queue_pop lays an element out, but the ABI allows it
            raw = MEMORY[0:0]  # empty: no IovArray for a split layout
            iovs = (list(_IOV.iter_unpack(MEMORY[in_sg_addr:in_sg_addr + 16 * in_num]))
                    + list(_IOV.iter_unpack(MEMORY[out_sg_addr:out_sg_addr + 16 * out_num])))
        # The common shape, validated here once for the whole path: the 16-byte header
        # alone in the first out buffer, the status byte alone in the last in buffer, a
        # plain read or write inside the disk. Anything else takes the general decoder.
        if out_num and in_num and iovs[in_num][1] == OUTHDR_SIZE and iovs[in_num - 1][1] == 1:
            rtype, _prio, sector = _OUTHDR_UNPACK_FROM(MEMORY, iovs[in_num][0])
            if rtype == T_IN:
                data = iovs[:in_num - 1]
                op = _READ
            elif rtype == T_OUT and self.geometry.writable:
                data = iovs[in_num + 1:]
                op = _WRITE
            else:
                data = None
            if data:
                if len(data) == 1:
                    nbytes = data[0][1]
                elif len(data) < _MANY or not raw:
                    nbytes = sum([ln for _, ln in data])
                else:
                    # Many segments (a 1 MiB request has 256): keep them as the C array
                    # they are in the element, summed and later checked at C speed.
                    first = 0 if op is _READ else 16 * (in_num + 1)
                    data_raw = raw[first:first + 16 * len(data)].tobytes()
                    nbytes = sum(memoryview(data_raw).cast("Q")[1::2])
                    data = IovArray(data, in_sg_addr + first, data_raw)
                nr = nbytes >> SECTOR_SHIFT
                geometry = self.geometry
                if (not nbytes & 511 and not (sector << SECTOR_SHIFT) % geometry.blk_size
                        and sector + nr <= geometry.capacity):
                    status_addr = iovs[in_num - 1][0]
                    used_len = (nbytes + 1 if op is _READ else
                                1 if in_num == 1 else sum([ln for _, ln in iovs[:in_num]]))
                    bio = VhostBio(self, qidx, vq, elem, op, sector, nr, data, status_addr,
                                   used_len)
                    self.in_flight += 1  # _submit, inline: one frame less per request
                    try:
                        self.sink.submit_bio(bio)
                    except BaseException:
                        self.log.exception("submit_bio(%r) raised", bio)
                        bio.done(Status.EIO)
                    return
        self._start_general(qidx, vq, elem, iovs[:in_num], iovs[in_num:])

    def _start_general(self, qidx: int, vq: Ptr, elem: Ptr, in_sg: list[IoVec],
                       out_sg: list[IoVec]) -> None:
        """Any request shape: the pure decoder decides (rejections named there)."""
        out_num, in_num = len(out_sg), len(in_sg)
        out_len = sum([ln for _, ln in out_sg]) if out_num != 1 else out_sg[0][1]
        in_len = sum([ln for _, ln in in_sg]) if in_num != 1 else in_sg[0][1]
        if out_num and out_sg[0][1] >= OUTHDR_SIZE:  # the whole header in the first buffer
            head = MEMORY[out_sg[0][0]:out_sg[0][0] + OUTHDR_SIZE].tobytes()
        else:
            head = _read_head(out_sg, out_len, OUTHDR_SIZE)
        if len(head) == OUTHDR_SIZE and _TYPE.unpack_from(head)[0] in (T_DISCARD,
                                                                       T_WRITE_ZEROES):
            head = _read_head(out_sg, out_len, OUTHDR_SIZE + SEGMENT_SIZE)
        request = decode_request(head, out_len, in_len, self.geometry)
        if isinstance(request, Rejection):
            self._reject(vq, elem, request, in_sg)
            return
        status_addr = status_address(in_sg)
        if request.op is None:  # GET_ID: answered here, the serial is ours
            serial = self.serial[:request.data_len].ljust(request.data_len, b"\0")
            iov_from_bytes(iov_slice(in_sg, 0, request.data_len), serial)
            MEMORY[status_addr] = 0
            self._finish(vq, elem, request.used_len)
            return
        self._submit(VhostBio(self, qidx, vq, elem, request.op, request.sector,
                              request.nr_sectors, data_iovecs(request, out_sg, in_sg),
                              status_addr, request.used_len))

    def _submit(self, bio: VhostBio) -> None:
        self.in_flight += 1
        try:
            self.sink.submit_bio(bio)
        except BaseException:
            self.log.exception("submit_bio(%r) raised", bio)
            bio.done(Status.EIO)

    def _reject(self, vq: Ptr, elem: Ptr, rejection: Rejection, in_sg: list[IoVec]) -> None:
        self.rejected += 1
        self.log.warning("rejected a request: %s", rejection.reason)
        if rejection.status is not None:
            MEMORY[status_address(in_sg)] = rejection.status
        self._finish(vq, elem, rejection.used_len)

    def _notify(self, qidx: int) -> None:
        """The deferred notify of queue ``qidx`` (at the release of the PLUG)."""
        self._notify_due[qidx] = False
        if self._vqs[qidx] and self._started[qidx]:
            self.lib.notify(self._dev_ptr, self._vq_ptrs[qidx])

    def _finish(self, vq: Ptr, elem: Ptr, used_len: int) -> None:
        """Push ``elem`` with ``used_len`` bytes written, notify the guest, free it."""
        lib, dev = self.lib, self._dev_ptr
        lib.push(dev, vq, elem, used_len)
        lib.notify(dev, vq)
        lib.free_elem(elem)


def _read_head(out_sg: list[IoVec], out_len: int, want: int) -> bytes:
    """The first ``min(want, out_len)`` bytes of the out side, gathered if split."""
    n = min(want, out_len)
    if not out_sg:
        return b""
    base, length = out_sg[0]
    if length >= n:
        return MEMORY[base:base + n].tobytes()
    return b"".join(MEMORY[b:b + ln] for b, ln in iov_slice(out_sg, 0, n))


class VhostUserBlkExport:
    """A BioSink served as a vhost-user-blk disk on a unix socket.

    Create it on the daemon's loop, ``start()`` it, ``await close()`` it. The callbacks
    run on the loop when a front-end connects or has gone (after its requests drained).
    """

    def __init__(
        self,
        export_id: str,
        sink: BioSink,
        socket_path: str | Path,
        *,
        num_queues: int = 1,
        writable: bool = True,
        serial: str = "",
        loop: asyncio.AbstractEventLoop | None = None,
        on_connected: Callable[[str], None] | None = None,
        on_disconnected: Callable[[str], None] | None = None,
        on_resubmit: Callable[[str, int, int], None] | None = None,
        listener: socket.socket | None = None,
    ) -> None:
        self.id = export_id
        self.sink = sink
        self.socket_path = Path(socket_path)
        self.num_queues = num_queues
        self.writable = writable
        self.serial = serial
        self._on_connected = on_connected
        self._on_disconnected = on_disconnected
        self.device = VirtioBlkDevice(
            sink, writable=writable, num_queues=num_queues, serial=serial, name=export_id,
            on_resubmit=(None if on_resubmit is None
                         else lambda q, n: on_resubmit(export_id, q, n)))
        self.server = VhostUserServer(
            self.socket_path, self.device, max_queues=num_queues, loop=loop,
            on_connected=self._connected, on_disconnected=self._disconnected,
            name=export_id, listener=listener,
        )

    @property
    def connected(self) -> bool:
        return self.server.connected

    @property
    def in_flight(self) -> int:
        return self.device.in_flight

    @property
    def resubmitted(self) -> int:
        return self.device.resubmitted

    @property
    def queue_ios(self) -> list[int]:
        return list(self.device.queue_ios)

    @property
    def config_changes(self) -> int:
        return self.device.config_changes

    def capacity_changed(self) -> bool:
        """After a resume: announce a new size to the guest (see VirtioBlkDevice)."""
        return self.device.capacity_changed()

    @property
    def size_bytes(self) -> int:
        return self.sink.size_sectors << SECTOR_SHIFT

    def start(self) -> None:
        """Listen for a front-end; raises VhostUserError if the socket path is in use."""
        self.server.start()

    def disconnect(self) -> None:
        """Drop the current front-end (a reconnect=1 front-end comes back by itself)."""
        self.server.disconnect()

    async def close(self, drain_timeout: float | None = 30.0) -> None:
        """Stop serving: the front-end is dropped after its requests drain."""
        await self.server.close(drain_timeout)

    def _connected(self) -> None:
        if self._on_connected:
            self._on_connected(self.id)

    def _disconnected(self) -> None:
        if self._on_disconnected:
            self._on_disconnected(self.id)
