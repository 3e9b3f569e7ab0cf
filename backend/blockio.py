"""The block I/O vocabulary every layer shares: operations, statuses, iovecs, bios, devices.

This module is the contract between vhost/ (which turns virtqueue elements into bios),
dm/ (which splits and maps them), targets/ and devices/ (which do the I/O). It imports
nothing from them, so every layer may import it.

Buffers are iovecs, ``(address, length)`` pairs of raw pointers: in the daemon they point
straight into guest memory (zero copy), in unit tests into ctypes buffers. Completion is
a callback, always invoked on the event loop's thread (a synchronous device may invoke it
before ``submit`` returns; callers must allow for that).
"""

from __future__ import annotations

import ctypes
import enum
import functools
import logging
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Protocol

log = logging.getLogger(__name__)

SECTOR_SHIFT = 9
SECTOR_SIZE = 1 << SECTOR_SHIFT

IoVec = tuple[int, int]
"""(address, length in bytes)."""


class Op(enum.IntEnum):
    """What a bio asks for. FLUSH with no data is an empty flush."""

    READ = 0
    WRITE = 1
    FLUSH = 2
    DISCARD = 3
    WRITE_ZEROES = 4

    @property
    def has_data(self) -> bool:
        return self is _READ or self is _WRITE


# Members as module globals for the hot paths: on Python 3.11 ``Op.READ`` goes through
# EnumType's __getattr__ hook, several times slower than a global.
_READ = Op.READ
_WRITE = Op.WRITE


class Status(enum.IntEnum):
    """errno-like completion statuses, plus the core-internal REQUEUE.

    vhost/ maps them to VIRTIO_BLK_S_* only at the very end. REQUEUE never reaches a
    guest: the core turns it into a pushback (noflush suspend) or into EIO.
    """

    OK = 0
    EIO = 5
    EAGAIN = 11
    EBUSY = 16
    EINVAL = 22
    ENOSPC = 28
    EROFS = 30
    ENOLINK = 67
    EOPNOTSUPP = 95
    ETIMEDOUT = 110
    REQUEUE = 1000
    DELAY_REQUEUE = 1001

    @property
    def ok(self) -> bool:
        return self is Status.OK


Completion = Callable[[Status], None]


class IovArray(list[IoVec]):
    """Iovecs that also lie in memory as a C ``struct iovec`` array at ``addr``.

    vhost/ makes one for a request of many segments (a 1 MiB transfer is 256 of them):
    the guest's own ``struct iovec`` array in the popped element, valid until the
    element is pushed, which is after the bio ends. A device that hands iovecs to the
    kernel passes ``addr`` as it is (an AIO preadv/pwritev iocb) instead of packing the
    list again, and :func:`iov_array_aligned` checks ``raw`` (the array's bytes) without a
    Python step per segment. Slicing gives a plain list: only the whole array is at
    ``addr``. Never mutated after it is made.
    """

    __slots__ = ("addr", "raw")

    def __init__(self, iovecs: Sequence[IoVec], addr: int, raw: bytes) -> None:
        super().__init__(iovecs)
        self.addr = addr
        self.raw = raw


@functools.cache
def _bit_table(mask: int) -> bytes:
    """``translate`` table: a byte's value -> 1 if it has a bit of ``mask``, else 0."""
    return bytes(1 if b & mask else 0 for b in range(256))


def iov_array_aligned(iovecs: IovArray, mask: int) -> bool:
    """Whether every base and length in ``iovecs`` is a multiple of ``mask + 1`` (a
    power of two below 65536): what O_DIRECT asks of the buffers.

    Reads the low two bytes of every 64-bit word of ``raw`` (bases and lengths alike)
    with ``bytes.translate``: C speed, however many segments.
    """
    raw = iovecs.raw
    return (1 not in raw[0::8].translate(_bit_table(mask & 0xFF))
            and 1 not in raw[1::8].translate(_bit_table(mask >> 8)))


def iov_length(iovecs: Sequence[IoVec]) -> int:
    """Total bytes described by ``iovecs``."""
    return sum(length for _, length in iovecs)


def iov_slice(iovecs: Sequence[IoVec], offset: int, length: int) -> list[IoVec]:
    """The iovecs covering ``length`` bytes starting ``offset`` bytes into ``iovecs``.

    Used to split a bio at target boundaries and to rewind a requeued piece: no data
    moves, only pointers are recomputed.
    """
    out: list[IoVec] = []
    end = offset + length
    pos = 0
    for base, ln in iovecs:
        seg_end = pos + ln
        if seg_end > offset and pos < end:
            lo = max(pos, offset)
            hi = min(seg_end, end)
            out.append((base + (lo - pos), hi - lo))
        if seg_end >= end:
            break
        pos = seg_end
    if sum(ln for _, ln in out) != length:
        raise ValueError(f"iov_slice: {offset}+{length} is past the {iov_length(iovecs)} bytes")
    return out


def iov_zero(iovecs: Sequence[IoVec]) -> None:
    """Fill the buffers with zeroes (zero target, reads of a null device)."""
    for base, ln in iovecs:
        ctypes.memset(base, 0, ln)


def iov_to_bytes(iovecs: Sequence[IoVec]) -> bytes:
    """Copy the buffers into one bytes object (tests and small metadata only)."""
    return b"".join(ctypes.string_at(base, ln) for base, ln in iovecs)


def iov_from_bytes(iovecs: Sequence[IoVec], data: bytes) -> None:
    """Copy ``data`` into the buffers (tests and small metadata only)."""
    pos = 0
    for base, ln in iovecs:
        ctypes.memmove(base, data[pos:pos + ln], ln)
        pos += ln


class Bio:
    """One block request: an operation on ``nr_sectors`` from ``sector``, with buffers.

    ``done`` is called exactly once with the final status (the name a device's
    ``submit`` gives its callback too). ``private`` is free for the layer that owns the
    bio (a target's per-clone state, the vhost element, ...).
    ``preflush`` on a WRITE asks for a flush before the data (REQ_PREFLUSH); ``fua``
    for the data to be durable when it completes.
    """

    __slots__ = ("done", "fua", "iovecs", "nr_sectors", "op", "preflush", "private", "sector")

    validated: ClassVar[bool] = False
    """True for a subclass whose maker has checked that the iovecs hold exactly
    ``nbytes`` (vhost/'s requests, checked once at the edge): the core then does not
    sum them again."""

    def __init__(
        self,
        op: Op,
        sector: int,
        nr_sectors: int,
        iovecs: Sequence[IoVec],
        done: Completion,
        *,
        preflush: bool = False,
        fua: bool = False,
    ) -> None:
        self.op = op
        self.sector = sector
        self.nr_sectors = nr_sectors
        self.iovecs = list(iovecs)
        self.done = done
        self.preflush = preflush
        self.fua = fua
        self.private: Any = None

    @property
    def nbytes(self) -> int:
        return self.nr_sectors << SECTOR_SHIFT

    def __repr__(self) -> str:
        return f"Bio({self.op.name} {self.sector}+{self.nr_sectors})"


class Plug:
    """The kernel's blk_plug: submissions made while it is held go out when it is released.

    Whoever starts a batch of requests (vhost/, popping every element of one kick) holds
    the plug around it; a device that batches its submissions (linux_aio) hands its
    flush to the plug instead of scheduling it for the next loop turn, so the batch
    leaves at once, whole. Nested holds count; only the outermost release flushes.
    Loop thread only, like every submission.

    ``with PLUG:`` is the readable form. The per-request paths (a kick, a reap, a
    completion) spell it out instead, as ``depth`` and ``flushes`` plus ``unplug``: at
    QD1, ``__enter__``, ``__exit__`` and ``defer`` were 6 of a request's 57 Python calls
    (two wake-ups per request), and a frame costs 1-1.5 µs of CPU there.
    """

    __slots__ = ("depth", "flushes")

    def __init__(self) -> None:
        self.depth = 0
        """Holds in progress; flushes run when the outermost one ends."""
        self.flushes: list[Callable[[], None]] = []
        """Deferred to the release, in order."""

    def __enter__(self) -> None:
        self.depth += 1

    def __exit__(self, *_exc: object) -> None:
        self.depth -= 1
        if self.depth == 0 and self.flushes:
            self.unplug()

    def unplug(self) -> None:
        """Run what was deferred, in order (the outermost hold has just ended)."""
        while self.flushes:
            flushes, self.flushes = self.flushes, []
            for flush in flushes:
                try:
                    flush()
                except Exception:
                    log.exception("unplug: %r raised", flush)

    def defer(self, flush: Callable[[], None]) -> bool:
        """Run ``flush`` at release if the plug is held (True); False if it is not."""
        if self.depth:
            self.flushes.append(flush)
            return True
        return False


PLUG = Plug()
"""The plug of the loop thread (there is one loop per daemon)."""


class BlockDevice(Protocol):
    """What a target maps onto: a file, an NBD export, memory, another mapped device.

    ``submit`` never blocks and never raises: the I/O happens elsewhere (a worker
    thread, a socket) and ``done`` is called once, on the loop thread, with the status.
    Offsets and lengths are in bytes; ``iovecs`` hold exactly ``length`` bytes for READ
    and WRITE and are empty otherwise.
    """

    @property
    def name(self) -> str: ...

    @property
    def size(self) -> int:
        """Size in bytes."""
        ...

    @property
    def read_only(self) -> bool: ...

    def submit(
        self, op: Op, offset: int, length: int, iovecs: Sequence[IoVec], done: Completion
    ) -> None: ...


class BlockDeviceBase:
    """The name, size and read-only flag every BlockDevice reports, written once.

    Set at construction; a device whose size changes keeps ``_size`` current, and one
    that computes a value overrides its property (a file re-reads its size, an NBD
    export is also read-only when its server says so).
    """

    def __init__(self, name: str, size: int = 0, read_only: bool = False) -> None:
        self._name = name
        self._size = size
        self._read_only = read_only

    @property
    def name(self) -> str:
        return self._name

    @property
    def size(self) -> int:
        """Size in bytes."""
        return self._size

    @property
    def read_only(self) -> bool:
        return self._read_only


class BioSink(Protocol):
    """What vhost/ submits guest requests to (a mapped device): bios in, ``bio.done`` out."""

    @property
    def size_sectors(self) -> int: ...

    def submit_bio(self, bio: Bio) -> None: ...
