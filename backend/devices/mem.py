"""In-memory block devices (``mem:SIZE``, ``null:SIZE``) for tests and demos.

Both complete synchronously inside ``submit`` by default (the harshest case for a
caller's reentrancy). With ``complete_on_loop=True`` the transfer and the completion
happen in a later ``call_soon`` callback, like a device whose I/O runs elsewhere; tests
use it to have I/O in flight across a suspend.
"""

from __future__ import annotations

import asyncio
import ctypes
import mmap
from collections import Counter
from collections.abc import Sequence

from backend.blockio import BlockDeviceBase, Completion, IoVec, Op, Status, iov_length, iov_zero


class _LoopDevice(BlockDeviceBase):
    """Common part: validation, and when to complete."""

    def __init__(self, name: str, size: int, *, complete_on_loop: bool = False,
                 read_only: bool = False) -> None:
        if size < 0:
            raise ValueError(f"{name}: negative size {size}")
        super().__init__(name, size, read_only)
        self.complete_on_loop = complete_on_loop
        self.ops: Counter[Op] = Counter()
        """How many requests of each kind were submitted (for tests)."""

    def submit(
        self, op: Op, offset: int, length: int, iovecs: Sequence[IoVec], done: Completion
    ) -> None:
        """Run (now or on the loop) and complete with a status; never raises."""
        self.ops[op] += 1
        iovecs = list(iovecs)
        if self.complete_on_loop:
            asyncio.get_running_loop().call_soon(self._complete, op, offset, length, iovecs, done)
        else:
            self._complete(op, offset, length, iovecs, done)

    def _complete(
        self, op: Op, offset: int, length: int, iovecs: list[IoVec], done: Completion
    ) -> None:
        done(self._transfer(op, offset, length, iovecs))

    def _transfer(self, op: Op, offset: int, length: int, iovecs: list[IoVec]) -> Status:
        if op is Op.FLUSH:
            return Status.OK
        if offset < 0 or length < 0 or offset + length > self._size:
            return Status.EIO
        if op.has_data and iov_length(iovecs) != length:
            return Status.EINVAL
        if self._read_only and op is not Op.READ:
            return Status.EROFS
        self._do(op, offset, iovecs, length)
        return Status.OK

    def _do(self, op: Op, offset: int, iovecs: list[IoVec], length: int) -> None:
        raise NotImplementedError


class MemDevice(_LoopDevice):
    """A device backed by a ctypes buffer; data moves with memmove on iovec addresses."""

    def __init__(self, name: str, size: int, *, complete_on_loop: bool = False,
                 read_only: bool = False) -> None:
        super().__init__(name, size, complete_on_loop=complete_on_loop, read_only=read_only)
        # Anonymous memory the kernel zero-fills on first touch: a ctypes array would be
        # zeroed here, on the loop (4 s and the whole size in RSS for mem:1G).
        self._map = mmap.mmap(-1, max(size, 1))
        self._buf = (ctypes.c_char * max(size, 1)).from_buffer(self._map)
        self._base = ctypes.addressof(self._buf)

    def _do(self, op: Op, offset: int, iovecs: list[IoVec], length: int) -> None:
        pos = self._base + offset
        if op is Op.READ:
            for addr, ln in iovecs:
                ctypes.memmove(addr, pos, ln)
                pos += ln
        elif op is Op.WRITE:
            for addr, ln in iovecs:
                ctypes.memmove(pos, addr, ln)
                pos += ln
        else:  # DISCARD, WRITE_ZEROES: the range reads back as zeroes
            ctypes.memset(pos, 0, length)

    def read(self, offset: int, length: int) -> bytes:
        """The stored bytes (tests)."""
        return ctypes.string_at(self._base + offset, length)

    def write(self, offset: int, data: bytes) -> None:
        """Store bytes directly (tests)."""
        ctypes.memmove(self._base + offset, data, len(data))


class NullDevice(_LoopDevice):
    """Reads return zeroes, writes are discarded."""

    def _do(self, op: Op, offset: int, iovecs: list[IoVec], length: int) -> None:
        if op is Op.READ:
            iov_zero(iovecs)
