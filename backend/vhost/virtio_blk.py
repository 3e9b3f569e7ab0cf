"""virtio-blk on the wire: feature bits, config space, and the pure request decoder.

Nothing here touches guest memory or the library: ``decode_request`` takes the request's
leading bytes and the sizes of its two buffer sides and returns either a ``BlkRequest``
or a named ``Rejection``; ``split_buffers`` turns the element's iovecs into the data
iovecs and the status byte's address. Both follow QEMU's
``block/export/virtio-blk-handler.c`` so malformed requests get the status QEMU gives.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from backend.blockio import SECTOR_SHIFT, SECTOR_SIZE, IoVec, Op, Status, iov_slice

# Request types (virtio 1.2, 5.2.6).
T_IN = 0
T_OUT = 1
T_FLUSH = 4
T_GET_ID = 8
T_DISCARD = 11
T_WRITE_ZEROES = 13
T_BARRIER = 0x80000000  # legacy flag, ignored as QEMU does

# Status byte values.
S_OK = 0
S_IOERR = 1
S_UNSUPP = 2

# Feature bits.
F_SIZE_MAX = 1
F_SEG_MAX = 2
F_RO = 5
F_BLK_SIZE = 6
F_FLUSH = 9
F_TOPOLOGY = 10
F_CONFIG_WCE = 11
F_MQ = 12
F_DISCARD = 13
F_WRITE_ZEROES = 14

WRITE_ZEROES_FLAG_UNMAP = 1
ID_BYTES = 20
OUTHDR = struct.Struct("<IIQ")  # type, ioprio, sector
SEGMENT = struct.Struct("<QII")  # sector, num_sectors, flags
OUTHDR_SIZE = OUTHDR.size  # 16
SEGMENT_SIZE = SEGMENT.size  # 16

# virtio_blk_config up to write_zeroes_may_unmap and its padding (60 bytes):
# capacity, size_max, seg_max, geometry(c,h,s), blk_size, physical_block_exp,
# alignment_offset, min_io_size, opt_io_size, wce, unused, num_queues,
# max_discard_sectors, max_discard_seg, discard_sector_alignment,
# max_write_zeroes_sectors, max_write_zeroes_seg, write_zeroes_may_unmap, unused[3]
CONFIG = struct.Struct("<QIIHBBIBBHIBBHIIIIIB3x")
CONFIG_WCE_OFFSET = 32
"""Where ``wce`` sits in virtio_blk_config: the one field a guest may write."""


_OK = Status.OK  # a global: cheaper than the enum attribute on the completion path


def status_byte(status: Status) -> int:
    """The core's errno-like status as the guest sees it, decided at the very end."""
    if status is _OK:
        return S_OK
    if status is Status.EOPNOTSUPP:
        return S_UNSUPP
    return S_IOERR


@dataclass(frozen=True, slots=True)
class BlkGeometry:
    """What the export offers: size, limits, read-only. Sizes in 512-byte sectors."""

    capacity: int
    writable: bool = True
    blk_size: int = SECTOR_SIZE
    num_queues: int = 1
    seg_max: int = 1022  # libvhost-user maps at most 1024 descriptors per request
    size_max: int = 1 << 20
    max_discard_sectors: int = 32768
    max_write_zeroes_sectors: int = 32768
    wce: bool = True
    """Write cache enabled (write-back): the guest flushes. Off (write-through), every
    write is durable when it completes (sent FUA)."""

    def features(self) -> int:
        """The virtio-blk feature bits (the library adds VERSION_1 and the ring bits):
        those qemu-storage-daemon offers, TOPOLOGY and CONFIG_WCE included."""
        bits = (1 << F_SIZE_MAX | 1 << F_SEG_MAX | 1 << F_BLK_SIZE | 1 << F_FLUSH
                | 1 << F_TOPOLOGY | 1 << F_CONFIG_WCE
                | 1 << F_MQ | 1 << F_DISCARD | 1 << F_WRITE_ZEROES)
        if not self.writable:
            bits |= 1 << F_RO
        return bits

    def config(self, length: int) -> bytes:
        """Exactly ``length`` bytes of virtio_blk_config (QEMU 7.2 asks for 57)."""
        blk_sectors = self.blk_size >> SECTOR_SHIFT
        raw = CONFIG.pack(
            self.capacity, self.size_max, self.seg_max, 0, 0, 0, self.blk_size,
            0, 0, 1, 1, int(self.wce), 0, self.num_queues,
            self.max_discard_sectors, 1, blk_sectors,
            self.max_write_zeroes_sectors, 1, 1,
        )
        return raw[:length].ljust(length, b"\0")


class BlkRequest(NamedTuple):
    """A well-formed request. ``op`` is None for GET_ID (answered by vhost/ itself).

    ``data_len`` bytes of data sit after the 16-byte header on the out side (OUT) or
    before the status byte on the in side (IN, GET_ID); ``used_len`` is what the used
    ring reports (the whole in side, as QEMU does). A NamedTuple: one is built per
    request, and a frozen dataclass costs three times as much to build.
    """

    type: int
    op: Op | None
    sector: int
    nr_sectors: int
    data_len: int
    used_len: int
    unmap: bool = False


@dataclass(frozen=True, slots=True)
class Rejection:
    """A request answered without I/O: ``status`` (S_IOERR or S_UNSUPP), ``reason`` to log.

    ``status`` is None when there is no status byte to write at all.
    """

    reason: str
    status: int | None
    used_len: int = 0


def _range_ok(geometry: BlkGeometry, sector: int, nbytes: int) -> str | None:
    if nbytes % SECTOR_SIZE:
        return f"length {nbytes} is not a multiple of {SECTOR_SIZE}"
    if (sector << SECTOR_SHIFT) % geometry.blk_size:
        return f"sector {sector} is not aligned to the {geometry.blk_size}-byte block size"
    nr = nbytes >> SECTOR_SHIFT
    if sector > geometry.capacity or nr > geometry.capacity - sector:
        return f"sectors {sector}+{nr} are past the capacity {geometry.capacity}"
    return None


def decode_request(
    head: bytes, out_len: int, in_len: int, geometry: BlkGeometry
) -> BlkRequest | Rejection:
    """Decode one virtqueue element from its leading bytes and the sizes of its two sides.

    ``head`` is the first bytes of the out side: at least the 16-byte virtio_blk_outhdr,
    and for DISCARD/WRITE_ZEROES the segment after it too (32 bytes) when present.
    ``out_len``/``in_len`` are the total bytes of the out (driver-written) and in
    (device-written) buffers; the status byte is the last in byte.
    """
    if in_len < 1:
        return Rejection("no status byte", None)
    if out_len < OUTHDR_SIZE or len(head) < OUTHDR_SIZE:
        return Rejection(f"header is {out_len} bytes, needs {OUTHDR_SIZE}", S_IOERR, in_len)
    rtype, _ioprio, sector = OUTHDR.unpack_from(head)
    rtype &= ~T_BARRIER
    if rtype == T_IN:
        nbytes = in_len - 1
        problem = _range_ok(geometry, sector, nbytes)
        if problem:
            return Rejection(f"read: {problem}", S_IOERR, in_len)
        return BlkRequest(rtype, Op.READ, sector, nbytes >> SECTOR_SHIFT, nbytes, in_len)
    if rtype == T_OUT:
        if not geometry.writable:
            return Rejection("write to a read-only export", S_IOERR, in_len)
        nbytes = out_len - OUTHDR_SIZE
        problem = _range_ok(geometry, sector, nbytes)
        if problem:
            return Rejection(f"write: {problem}", S_IOERR, in_len)
        return BlkRequest(rtype, Op.WRITE, sector, nbytes >> SECTOR_SHIFT, nbytes, in_len)
    if rtype == T_FLUSH:
        return BlkRequest(rtype, Op.FLUSH, 0, 0, 0, in_len)
    if rtype == T_GET_ID:
        return BlkRequest(rtype, None, 0, 0, min(in_len - 1, ID_BYTES), in_len)
    if rtype in (T_DISCARD, T_WRITE_ZEROES):
        return _decode_segment(rtype, head, out_len, in_len, geometry)
    return Rejection(f"unsupported request type {rtype}", S_UNSUPP, in_len)


def _decode_segment(
    rtype: int, head: bytes, out_len: int, in_len: int, geometry: BlkGeometry
) -> BlkRequest | Rejection:
    name = "discard" if rtype == T_DISCARD else "write-zeroes"
    if not geometry.writable:
        return Rejection(f"{name} on a read-only export", S_IOERR, in_len)
    payload = out_len - OUTHDR_SIZE
    if payload > SEGMENT_SIZE:
        return Rejection(f"{name}: {payload // SEGMENT_SIZE} segments, max 1", S_UNSUPP, in_len)
    if payload != SEGMENT_SIZE or len(head) < OUTHDR_SIZE + SEGMENT_SIZE:
        return Rejection(f"{name}: segment is {payload} bytes, needs 16", S_IOERR, in_len)
    sector, nr, flags = SEGMENT.unpack_from(head, OUTHDR_SIZE)
    limit = (geometry.max_write_zeroes_sectors if rtype == T_WRITE_ZEROES
             else geometry.max_discard_sectors)
    if nr > limit:
        return Rejection(f"{name}: {nr} sectors, max {limit}", S_IOERR, in_len)
    problem = _range_ok(geometry, sector, nr << SECTOR_SHIFT)
    if problem:
        return Rejection(f"{name}: {problem}", S_IOERR, in_len)
    if flags & ~WRITE_ZEROES_FLAG_UNMAP:
        return Rejection(f"{name}: unknown flags {flags:#x}", S_UNSUPP, in_len)
    if rtype == T_DISCARD:
        if flags & WRITE_ZEROES_FLAG_UNMAP:
            return Rejection("discard with the unmap flag", S_UNSUPP, in_len)
        return BlkRequest(rtype, Op.DISCARD, sector, nr, 0, in_len)
    return BlkRequest(rtype, Op.WRITE_ZEROES, sector, nr, 0, in_len,
                      unmap=bool(flags & WRITE_ZEROES_FLAG_UNMAP))


def status_address(in_sg: Sequence[IoVec]) -> int:
    """Address of the status byte: the last byte of the in side."""
    base, length = in_sg[-1]
    return base + length - 1


def data_iovecs(
    request: BlkRequest, out_sg: Sequence[IoVec], in_sg: Sequence[IoVec]
) -> list[IoVec]:
    """The guest buffers holding the request's data, in place (zero copy).

    The header and the status byte may share descriptors with data, so this slices by
    byte offset; the common layout (header alone, status alone) takes the fast path.
    """
    if request.data_len == 0:
        return []
    if request.type == T_OUT:
        if out_sg[0][1] == OUTHDR_SIZE:
            return list(out_sg[1:])
        return iov_slice(out_sg, OUTHDR_SIZE, request.data_len)
    if in_sg[-1][1] == 1 and request.type == T_IN:
        return list(in_sg[:-1])
    return iov_slice(in_sg, 0, request.data_len)
