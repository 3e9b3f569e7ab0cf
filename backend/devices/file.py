"""``file:/path``: a block device over a regular file or block device node.

Data moves straight between the file and the iovecs (guest memory), by one of two
engines, as qemu-storage-daemon's ``aio=`` option chooses:

- ``native`` (the default): Linux AIO on the O_DIRECT descriptor, submitted and reaped on
  the loop thread (see linux_aio), with no thread hand-off per I/O;
- ``threads``: libc preadv/pwritev on a small pool of worker threads (the calls release
  the GIL), completions coming back to the loop in batches through a CompletionQueue.

The file is opened O_DIRECT where the file system allows; a request whose buffers are
not 512-byte aligned goes through a second, buffered descriptor instead of failing with
EINVAL. What AIO cannot do without blocking (buffered I/O, fdatasync, fallocate) always
goes to the pool, and so does everything when no AIO context can be had. As with QEMU's
aio=native, a write that must allocate blocks (a sparse image) makes io_submit wait for
the file system on the loop thread: preallocated images suit native best.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import queue
import stat
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

from ..blockio import (
    BlockDeviceBase,
    Completion,
    IovArray,
    IoVec,
    Op,
    Status,
    iov_array_aligned,
)
from ..errors import DeviceError
from ..limits import show
from . import libc
from .completion import CompletionQueue
from .linux_aio import IOV_MAX, AioContext, Request

log = logging.getLogger(__name__)

AioEngine = Literal["native", "threads"]
AIO_ENGINES: tuple[AioEngine, ...] = ("native", "threads")
AIO_DEPTH = 128
"""Requests one device keeps in the kernel at once (more wait for a free slot)."""

_ALIGN = 512
_ALIGN_MASK = _ALIGN - 1
# Members as globals on the per-request path (an enum attribute costs several times more
# on Python 3.11).
_READ, _WRITE, _FLUSH, _OK = Op.READ, Op.WRITE, Op.FLUSH, Status.OK
_STOP = None
_Job = tuple[Op, int, int, Sequence[IoVec], Completion]
_aio_unavailable_logged = False


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
    if (offset | length) & _ALIGN_MASK:
        return False
    if type(iovecs) is IovArray:  # many segments: checked without a step per segment
        return iov_array_aligned(iovecs, _ALIGN_MASK)
    for base, ln in iovecs:  # noqa: SIM110 - a plain loop: no generator per request
        if (base | ln) & _ALIGN_MASK:
            return False
    return True


class _WorkerPool:
    """Blocking file calls on worker threads, their statuses handed back to the loop.

    Threads start on first use: with the native engine most devices never need them.
    """

    def __init__(self, name: str, workers: int, loop: asyncio.AbstractEventLoop,
                 run: Callable[[Op, int, int, Sequence[IoVec]], Status]) -> None:
        self._name = name
        self._workers = workers
        self._loop = loop
        self._run = run
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._completions: CompletionQueue | None = None

    def put(self, op: Op, offset: int, length: int, iovecs: Sequence[IoVec],
            done: Completion) -> None:
        if not self._threads:
            self._start()
        self._jobs.put((op, offset, length, iovecs, done))

    def _start(self) -> None:
        self._completions = CompletionQueue(self._loop)
        self._threads = [
            threading.Thread(target=self._worker, args=(self._completions,),
                             name=f"file-{self._name}-{i}", daemon=True)
            for i in range(self._workers)
        ]
        for t in self._threads:
            t.start()

    def _worker(self, completions: CompletionQueue) -> None:
        while True:
            job = self._jobs.get()
            if job is _STOP:
                return
            op, offset, length, iovecs, done = job
            completions.put(done, self._run(op, offset, length, iovecs))

    def close(self) -> None:
        """Finish queued jobs (delivering their completions), stop the threads."""
        for _ in self._threads:
            self._jobs.put(_STOP)
        for t in self._threads:
            t.join()
        if self._completions is not None:
            self._completions.close()


def open_backing(name: str, path: Path, *, read_only: bool,
                 direct: bool = True) -> tuple[int, int]:
    """Open ``path`` for a FileDevice: (buffered fd, O_DIRECT fd or the same one).

    Blocking (a slow file system), so the daemon calls it off the loop. Only a regular
    file or a block device of non-zero size is a device: a FIFO, a directory, a
    character device or an empty file (a /proc file says 0) is refused before it is
    opened, and checked again on the descriptor (the path may change in between);
    O_NONBLOCK keeps even that second look from waiting on a FIFO.
    """
    shown = show(str(path), 200)
    try:
        _check_backing(name, path, os.stat(path))
    except OSError as e:
        raise DeviceError(f"{name}: cannot open {shown}: {e.strerror}") from e
    flags = (os.O_RDONLY if read_only else os.O_RDWR) | os.O_CLOEXEC
    try:
        fd = os.open(path, flags | os.O_NONBLOCK)
    except OSError as e:
        raise DeviceError(f"{name}: cannot open {shown}: {e.strerror}") from e
    try:
        st = os.fstat(fd)
        _check_backing(name, path, st)
        if stat.S_ISBLK(st.st_mode) and os.lseek(fd, 0, os.SEEK_END) == 0:
            raise DeviceError(f"{name}: {shown} has size 0: a device needs at least one"
                              " sector")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    fd_direct = fd
    if direct:
        try:
            fd_direct = os.open(path, flags | os.O_DIRECT)
        except OSError as e:
            log.info("%s: O_DIRECT not available on %s (%s); using the page cache",
                     name, path, e.strerror)
    return fd, fd_direct


def close_backing(fds: tuple[int, int]) -> None:
    """Close what :func:`open_backing` opened (a late open nobody waits for any more)."""
    for fd in set(fds):
        os.close(fd)


def _check_backing(name: str, path: Path, st: os.stat_result) -> None:
    path_shown = show(str(path), 200)
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISBLK(st.st_mode)):
        raise DeviceError(f"{name}: {path_shown} is not a regular file or block device"
                          f" ({_kind(st.st_mode)})")
    if stat.S_ISREG(st.st_mode) and st.st_size == 0:
        raise DeviceError(f"{name}: {path_shown} has size 0: a device needs at least one"
                          " sector")


def _kind(mode: int) -> str:
    for test, kind in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISDIR, "a directory"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return kind
    return "not a file"


class FileDevice(BlockDeviceBase):
    """A BlockDevice over a file; see the module docstring for how I/O is done.

    ``aio`` asks for an engine; ``self.aio`` says which one is in use (``threads`` when
    the file has no O_DIRECT or the kernel gives no AIO context). ``workers`` sizes the
    thread pool.
    """

    def __init__(
        self,
        name: str,
        path: str | Path,
        *,
        read_only: bool = False,
        direct: bool = True,
        aio: AioEngine = "native",
        workers: int = 8,
        loop: asyncio.AbstractEventLoop | None = None,
        fds: tuple[int, int] | None = None,
    ) -> None:
        if aio not in AIO_ENGINES:
            raise DeviceError(f"{name}: unknown aio engine {aio!r} (known: native, threads)")
        super().__init__(name, 0, read_only)
        self.path = Path(path)
        if fds is None:
            fds = open_backing(name, self.path, read_only=read_only, direct=direct)
        self._fd_buffered, self._fd_direct = fds
        self.direct = self._fd_direct != self._fd_buffered
        self._blockdev = stat.S_ISBLK(os.fstat(self._fd_buffered).st_mode)
        self._size = self._read_size()
        self._loop = loop or asyncio.get_running_loop()
        self._pool = _WorkerPool(name, workers, self._loop, self._do)
        self._aio_ctx = self._open_aio() if aio == "native" and self.direct else None
        self.aio: AioEngine = "native" if self._aio_ctx is not None else "threads"
        self._closed = False
        log.info("%s: %s opened (%s, aio=%s)", name, self.path,
                 "O_DIRECT" if self.direct else "page cache", self.aio)

    def _open_aio(self) -> AioContext | None:
        global _aio_unavailable_logged
        try:
            return AioContext(self._loop, depth=AIO_DEPTH, name=self._name,
                              on_done=self._aio_done, ok=_OK)
        except OSError as e:
            if not _aio_unavailable_logged:
                _aio_unavailable_logged = True
                log.warning("%s: no Linux AIO context (%s; see /proc/sys/fs/aio-max-nr); "
                            "file devices use worker threads", self._name, e.strerror)
            return None

    @property
    def size(self) -> int:
        """The size now, not at open: a file truncated under us is reported as it is."""
        if not self._closed:
            self._size = self._read_size()
        return self._size

    @property
    def state(self) -> str:
        """``ok``, or ``deleted`` once the file has no name left (I/O still reaches it)."""
        if self._closed or self._blockdev:
            return "ok"
        try:
            return "deleted" if os.fstat(self._fd_buffered).st_nlink == 0 else "ok"
        except OSError:
            return "ok"

    def _read_size(self) -> int:
        try:
            if self._blockdev:
                return os.lseek(self._fd_buffered, 0, os.SEEK_END)
            return os.fstat(self._fd_buffered).st_size
        except OSError:
            return self._size

    def submit(
        self, op: Op, offset: int, length: int, iovecs: Sequence[IoVec], done: Completion
    ) -> None:
        if self._closed:
            done(Status.ENOLINK)
            return
        if self._read_only and op is not _READ and op is not _FLUSH:
            done(Status.EROFS)
            return
        if self._aio_ctx is not None and (op is _READ or op is _WRITE):
            if len(iovecs) == 1:  # a guest's 4 KiB request: checked here, not in a call
                base, ln = iovecs[0]
                aligned = not (offset | length | base | ln) & _ALIGN_MASK
            else:
                aligned = len(iovecs) <= IOV_MAX and _aligned(offset, length, iovecs)
            if aligned:
                self._aio_ctx.submit(op is _WRITE, self._fd_direct, offset, iovecs, length,
                                     done)
                return
        self._pool.put(op, offset, length, iovecs, done)

    def _aio_done(self, req: Request, res: int) -> None:
        """A native request ended (``req.callback`` is the submitter's ``done``). The
        context calls back one that moved every byte with ``_OK`` itself, so this sees
        short, failed and EAGAIN requests; a whole one is still right here."""
        done: Completion = req.callback
        if res == req.length:
            done(_OK)
            return
        op = _WRITE if req.write else _READ
        if res == -errno.EAGAIN:
            # the kernel had no room
            self._pool.put(op, req.offset, req.length, req.iovecs, done)
        elif res < 0:
            log.warning("%s: %s at %d+%d failed: %s", self._name, op.name, req.offset,
                        req.length, os.strerror(-res))
            done(errno_status(-res))
        else:
            done(Status.EIO)  # end of file

    def _do(self, op: Op, offset: int, length: int, iovecs: Sequence[IoVec]) -> Status:
        """One request, synchronously (on a worker thread)."""
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
        """Finish queued I/O (delivering its completions), then close the descriptors."""
        if self._closed:
            return
        self._closed = True
        if self._aio_ctx is not None:
            self._aio_ctx.close()  # may still hand -EAGAIN requests to the pool
        self._pool.close()
        if self._fd_direct != self._fd_buffered:
            os.close(self._fd_direct)
        os.close(self._fd_buffered)
