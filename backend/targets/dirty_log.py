"""Mirror dirty-region logs (dm-log.c): which regions are in sync, which may be dirty.

Two types, as in the kernel: ``core <region_size> [sync|nosync]`` keeps the bits in
memory only, so every activation resyncs (unless ``nosync``); ``disk <log_dev>
<region_size> [sync|nosync]`` also writes the "clean" bits to ``log_dev`` so that after a
crash only regions that were dirty are resynced. A region is marked dirty before a write
to it is issued, and ``flush`` writes the bits to the log device and waits: a failed
flush is the log failure of seed 000. On-disk layout is dm-log's: a header (magic
"MiRr", version 2, region count) in sector 0 and the clean bitset from byte 1024.
"""

from __future__ import annotations

import asyncio
import ctypes
import enum
import re
import struct
from collections.abc import Callable

from backend.blockio import SECTOR_SIZE, BlockDevice, Op, Status
from backend.dm.events import TableEvent, TableEventKind
from backend.dm.target import StatusType
from backend.errors import TableError

MIRROR_MAGIC = 0x4D695272
MIRROR_DISK_VERSION = 2
LOG_OFFSET = 2
MAX_REGIONS = 1 << 24
"""Most regions a log tracks: three bitmaps of 2 MiB (the kernel has no such limit, but
a table asking for gigabytes of bitmap is a mistake, not a mirror)."""
_NOT_ALL_SET = re.compile(b"[^\xff]")
"""Finds the next byte of a bitmap with a clear bit, at C speed (find_next_zero_bit)."""
"""Sectors before the bitset on the log device."""


class Sync(enum.Enum):
    """The optional sync argument: resync if needed, force it, or trust the legs."""

    DEFAULT = ""
    FORCE = "sync"
    NOSYNC = "nosync"


def _bit(bits: bytearray, n: int) -> bool:
    return bool(bits[n >> 3] & (1 << (n & 7)))  # ext2 (little-endian) bit order


def _set(bits: bytearray, n: int, value: bool) -> None:
    if value:
        bits[n >> 3] |= 1 << (n & 7)
    else:
        bits[n >> 3] &= ~(1 << (n & 7)) & 0xFF


class CoreLog:
    """The ``core`` log: clean, sync and recovering bitsets in memory."""

    type_name = "core"

    def __init__(self, args: list[str], target_length: int) -> None:
        """create_log_context: ``<region_size> [sync|nosync]``; TableError on bad args."""
        if not 1 <= len(args) <= 2:
            raise TableError("wrong number of arguments to dirty region log")
        self.sync = Sync.DEFAULT
        if len(args) == 2:
            if args[1] not in ("sync", "nosync"):
                raise TableError(f"unrecognised sync argument to dirty region log: {args[1]}")
            self.sync = Sync(args[1])
        size = int(args[0]) if args[0].isdigit() else 0
        # _check_region_size: a power of two, at least 2 sectors, not beyond the target.
        if size < 2 or size > target_length or size & (size - 1):
            raise TableError(f"invalid region size {args[0]}")
        self.region_size = size
        self.region_count = -(-target_length // size)
        if self.region_count > MAX_REGIONS:
            raise TableError(f"{self.region_count} regions of {size} sectors: at most"
                             f" {MAX_REGIONS} regions (choose a larger region size)")
        nbytes = -(-self.region_count // 64) * 8  # whole 64-bit words, like BITS_PER_LONG
        self.clean = bytearray(b"\xff" * nbytes)
        self.sync_bits = bytearray((b"\xff" if self.sync is Sync.NOSYNC else b"\0") * nbytes)
        self.recovering = bytearray(nbytes)
        self.sync_count = self.region_count if self.sync is Sync.NOSYNC else 0
        self.sync_search = 0
        self.touched = False

    def is_clean(self, region: int) -> bool:
        return _bit(self.clean, region)

    def in_sync(self, region: int) -> bool:
        return _bit(self.sync_bits, region)

    def mark_region(self, region: int) -> None:
        _set(self.clean, region, False)
        self.touched = True

    def clear_region(self, region: int) -> None:
        _set(self.clean, region, True)
        self.touched = True

    def get_resync_work(self) -> int | None:
        """The next region neither in sync nor recovering (now marked recovering)."""
        region = self.sync_search
        while region < self.region_count:
            if _bit(self.sync_bits, region):
                # In sync: jump to the next byte with a clear bit, at C speed, rather
                # than a Python step per region (2^24 regions are seconds).
                m = _NOT_ALL_SET.search(self.sync_bits, region >> 3)
                if m is None:
                    break
                region = max(region + 1, m.start() << 3)
                continue
            if not _bit(self.recovering, region):
                self.sync_search = region + 1
                _set(self.recovering, region, True)
                return region
            region += 1
        self.sync_search = self.region_count
        return None

    def set_region_sync(self, region: int, in_sync: bool) -> None:
        _set(self.recovering, region, False)
        if in_sync and not _bit(self.sync_bits, region):
            _set(self.sync_bits, region, True)
            self.sync_count += 1
        elif not in_sync and _bit(self.sync_bits, region):
            _set(self.sync_bits, region, False)
            self.sync_count -= 1

    async def flush(self) -> bool:
        """Make the clean bits durable; False if the log device failed."""
        self.touched = False
        return True

    async def resume(self) -> bool:
        self.sync_search = 0
        return True

    async def postsuspend(self) -> bool:
        return True

    def _sync_word(self) -> list[str]:
        return [self.sync.value] if self.sync is not Sync.DEFAULT else []

    def status(self, kind: StatusType) -> str:
        if kind is StatusType.INFO:
            return "1 core"
        args = [str(self.region_size), *self._sync_word()]
        return " ".join(["core", str(len(args)), *args])


class DiskLog(CoreLog):
    """The ``disk`` log: the core log plus header and clean bits on ``log_dev``."""

    type_name = "disk"

    def __init__(self, args: list[str], target_length: int,
                 get_device: Callable[[str], BlockDevice],
                 on_fail: Callable[[TableEvent], None]) -> None:
        if not 2 <= len(args) <= 3:
            raise TableError("wrong number of arguments to disk dirty region log")
        super().__init__(args[1:], target_length)
        self.dev_name = args[0]
        self.dev = get_device(args[0])
        self.buf_size = -(-((LOG_OFFSET * SECTOR_SIZE) + len(self.clean)) // SECTOR_SIZE) \
            * SECTOR_SIZE
        if self.buf_size > self.dev.size:
            raise TableError(f"log device {args[0]} too small: need {self.buf_size} bytes")
        self.buf = ctypes.create_string_buffer(self.buf_size)
        self.failed = False
        self.flush_failed = False
        self._on_fail = on_fail

    async def _io(self, op: Op) -> bool:
        done: asyncio.Future[Status] = asyncio.get_running_loop().create_future()

        def complete(status: Status) -> None:
            if not done.done():
                done.set_result(status)

        length = self.buf_size if op is not Op.FLUSH else 0
        iovecs = [(ctypes.addressof(self.buf), self.buf_size)] if op.has_data else []
        self.dev.submit(op, 0, length, iovecs, complete)
        return (await done) is Status.OK

    def _fail(self, what: str) -> None:
        """fail_log_device: one table event when the log device first fails."""
        if not self.failed:
            self.failed = True
            self._on_fail(TableEvent(TableEventKind.LOG_FAILED, self.dev_name, what))

    async def _write(self) -> bool:
        header = struct.pack("<IIQ", MIRROR_MAGIC, MIRROR_DISK_VERSION, self.region_count)
        image = header.ljust(LOG_OFFSET * SECTOR_SIZE, b"\0") + bytes(self.clean)
        ctypes.memmove(self.buf, image.ljust(self.buf_size, b"\0"), self.buf_size)
        if not await self._io(Op.WRITE):
            self._fail("write")
            return False
        if not await self._io(Op.FLUSH):
            self.flush_failed = True
            self._fail("flush")
            return False
        return True

    async def flush(self) -> bool:
        """disk_flush: write the header and bits only when they changed."""
        if not self.touched:
            return True
        if not await self._write():
            return False
        self.touched = False
        return True

    async def resume(self) -> bool:
        """disk_resume: read the header; a valid one (and no sync override) supplies the
        clean bits, which become the sync bits; then write the header back."""
        self.sync_search = 0
        known = 0
        if not await self._io(Op.READ):
            self._fail("read")
            return False
        raw = ctypes.string_at(self.buf, self.buf_size)
        magic, version, regions = struct.unpack_from("<IIQ", raw)
        if self.sync is Sync.DEFAULT and magic == MIRROR_MAGIC and version == 2:
            known = min(regions, self.region_count)
            start = LOG_OFFSET * SECTOR_SIZE
            self.clean[:] = raw[start:start + len(self.clean)]
        # New regions (from ``known`` on): in sync only with nosync; bits past the end
        # stay clear. Whole bytes at once: a region at a time is seconds for 2^24.
        fill = self.sync is Sync.NOSYNC
        for region in range(known, min(-(-known // 8) * 8, len(self.clean) * 8)):
            _set(self.clean, region, fill and region < self.region_count)
        first = -(-known // 8)
        full = self.region_count // 8
        if full > first:
            self.clean[first:full] = (b"\xff" if fill else b"\0") * (full - first)
        for region in range(max(first, full) * 8, len(self.clean) * 8):
            _set(self.clean, region, fill and region < self.region_count)
        self.sync_bits[:] = self.clean
        self.sync_count = int.from_bytes(self.clean, "little").bit_count()
        return await self._write()

    async def postsuspend(self) -> bool:
        return await self.flush()

    def status(self, kind: StatusType) -> str:
        if kind is StatusType.INFO:
            state = "F" if self.flush_failed else "D" if self.failed else "A"
            return f"3 disk {self.dev_name} {state}"
        args = [self.dev_name, str(self.region_size), *self._sync_word()]
        return " ".join(["disk", str(len(args)), *args])


def create_dirty_log(log_type: str, args: list[str], target_length: int,
                     get_device: Callable[[str], BlockDevice],
                     on_fail: Callable[[TableEvent], None]) -> CoreLog:
    """dm_dirty_log_create: a log of ``log_type``; TableError saying what was wrong."""
    try:
        if log_type == "core":
            return CoreLog(args, target_length)
        if log_type == "disk":
            return DiskLog(args, target_length, get_device, on_fail)
        raise TableError(f"unknown dirty log type {log_type!r}")
    except TableError as exc:
        raise TableError(f"mirror: Error creating mirror dirty log: {exc.reason}") from exc
