"""``file:/path``: a block device over a regular file or block device node.

Data moves with libc preadv/pwritev straight between the file and the iovecs (guest
memory), on a small pool of worker threads (the calls release the GIL); completions come
back to the loop in batches through a CompletionQueue. The file is opened O_DIRECT where
the file system allows; a request whose buffers are not 512-byte aligned goes through a
second, buffered descriptor instead of failing with EINVAL.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import queue
import stat
import threading
from collections.abc import Sequence
from pathlib import Path

from ..blockio import Completion, IoVec, Op, Status
from ..errors import DeviceError
from . import libc
from .completion import CompletionQueue

log = logging.getLogger(__name__)

_ALIGN = 512
_STOP = None


def errno_status(err: int | None) -> Status:
    """Map an errno to the core's status (EIO for anything it has no name for)."""
    if err is None:
        return Status.EIO
    try:
        status = Status(err)
    except ValueError:
        return Status.EIO
    return status if status not in (Status.REQUEUE, Status.DELAY_REQUEUE) else Status.EIO


def _aligned(offset: int, length: int, iovecs: Sequence[IoVec]) -> bool:
    if offset % _ALIGN or length % _ALIGN:
        return False
    return all(base % _ALIGN == 0 and ln % _ALIGN == 0 for base, ln in iovecs)


class FileDevice:
    """A BlockDevice over a file; see the module docstring for how I/O is done."""

    def __init__(
        self,
        name: str,
        path: str | Path,
        *,
        read_only: bool = False,
        direct: bool = True,
        workers: int = 8,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self._name = name
        self.path = Path(path)
        self._read_only = read_only
        flags = (os.O_RDONLY if read_only else os.O_RDWR) | os.O_CLOEXEC
        try:
            self._fd_buffered = os.open(self.path, flags)
        except OSError as e:
            raise DeviceError(f"{name}: cannot open {self.path}: {e.strerror}") from e
        self._fd_direct = self._fd_buffered
        if direct:
            try:
                self._fd_direct = os.open(self.path, flags | os.O_DIRECT)
            except OSError as e:
                log.info("%s: O_DIRECT not available on %s (%s); using the page cache",
                         name, self.path, e.strerror)
        self.direct = self._fd_direct != self._fd_buffered
        st = os.fstat(self._fd_buffered)
        if stat.S_ISBLK(st.st_mode):
            self._size = os.lseek(self._fd_buffered, 0, os.SEEK_END)
        else:
            self._size = st.st_size
        self._loop = loop or asyncio.get_running_loop()
        self._completions = CompletionQueue(self._loop)
        self._jobs: queue.SimpleQueue[
            tuple[Op, int, int, Sequence[IoVec], Completion] | None] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._worker, name=f"file-{name}-{i}", daemon=True)
            for i in range(workers)
        ]
        for t in self._threads:
            t.start()
        self._closed = False

    @property
    def name(self) -> str:
        return self._name

    @property
    def size(self) -> int:
        return self._size

    @property
    def read_only(self) -> bool:
        return self._read_only

    def submit(
        self, op: Op, offset: int, length: int, iovecs: Sequence[IoVec], done: Completion
    ) -> None:
        if self._closed:
            done(Status.ENOLINK)
            return
        if self._read_only and op is not Op.READ and op is not Op.FLUSH:
            done(Status.EROFS)
            return
        self._jobs.put((op, offset, length, iovecs, done))

    def _worker(self) -> None:
        while True:
            job = self._jobs.get()
            if job is _STOP:
                return
            op, offset, length, iovecs, done = job
            self._completions.put(done, self._do(op, offset, length, iovecs))

    def _do(self, op: Op, offset: int, length: int, iovecs: Sequence[IoVec]) -> Status:
        try:
            if op is Op.READ or op is Op.WRITE:
                fd = self._fd_direct if _aligned(offset, length, iovecs) else self._fd_buffered
                if op is Op.READ:
                    n = libc.preadv(fd, offset, iovecs)
                else:
                    n = libc.pwritev(fd, offset, iovecs)
                return Status.OK if n == length else Status.EIO
            if op is Op.FLUSH:
                os.fdatasync(self._fd_buffered)
                return Status.OK
            if op is Op.DISCARD:
                libc.fallocate(self._fd_buffered,
                               libc.FALLOC_FL_PUNCH_HOLE | libc.FALLOC_FL_KEEP_SIZE,
                               offset, length)
                return Status.OK
            if op is Op.WRITE_ZEROES:
                try:
                    libc.fallocate(self._fd_buffered, libc.FALLOC_FL_ZERO_RANGE, offset, length)
                except OSError as e:
                    if e.errno != errno.EOPNOTSUPP:
                        raise
                    libc.fallocate(self._fd_buffered,
                                   libc.FALLOC_FL_PUNCH_HOLE | libc.FALLOC_FL_KEEP_SIZE,
                                   offset, length)
                return Status.OK
        except OSError as e:
            log.warning("%s: %s at %d+%d failed: %s", self._name, op.name, offset, length,
                        e.strerror)
            return errno_status(e.errno)
        return Status.EOPNOTSUPP

    def close(self) -> None:
        """Finish queued I/O, stop the workers, close the descriptors."""
        if self._closed:
            return
        self._closed = True
        for _ in self._threads:
            self._jobs.put(_STOP)
        for t in self._threads:
            t.join()
        self._completions.close()
        if self._fd_direct != self._fd_buffered:
            os.close(self._fd_direct)
        os.close(self._fd_buffered)
