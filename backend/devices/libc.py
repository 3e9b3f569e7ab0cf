"""The few libc calls the file device needs, on raw iovec addresses (zero copy).

``os.preadv`` wants Python buffers; guest memory is raw pointers, so we call libc
directly. CDLL calls release the GIL, so worker threads do I/O in parallel.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from collections.abc import Callable, Sequence

from ..blockio import IoVec


class Iovec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)

_preadv = _libc.preadv
_preadv.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_long]
_preadv.restype = ctypes.c_ssize_t
_pwritev = _libc.pwritev
_pwritev.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_long]
_pwritev.restype = ctypes.c_ssize_t
_fallocate = _libc.fallocate
_fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]
_fallocate.restype = ctypes.c_int

FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02
FALLOC_FL_ZERO_RANGE = 0x10
IOV_MAX = 1024


def _iov_array(iovecs: Sequence[IoVec]) -> ctypes.Array[Iovec]:
    arr = (Iovec * len(iovecs))()
    for i, (base, length) in enumerate(iovecs):
        arr[i].iov_base = base
        arr[i].iov_len = length
    return arr


_Transfer = Callable[[int, int, int, int], int]


def _transfer(fn: _Transfer, fd: int, offset: int, iovecs: Sequence[IoVec]) -> int:
    """Move every byte of ``iovecs`` (looping on short transfers); return bytes moved.

    Raises OSError with the errno on failure; a premature EOF returns fewer bytes.
    """
    todo = list(iovecs)
    done = 0
    while todo:
        chunk = todo[:IOV_MAX]
        arr = _iov_array(chunk)
        n = fn(fd, ctypes.addressof(arr), len(chunk), offset + done)
        if n < 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
        if n == 0:
            return done
        done += n
        # drop what was transferred, keeping a partly-done iovec's remainder
        while n:
            base, length = todo[0]
            if n >= length:
                n -= length
                todo.pop(0)
            else:
                todo[0] = (base + n, length - n)
                n = 0
    return done


def preadv(fd: int, offset: int, iovecs: Sequence[IoVec]) -> int:
    return _transfer(_preadv, fd, offset, iovecs)


def pwritev(fd: int, offset: int, iovecs: Sequence[IoVec]) -> int:
    return _transfer(_pwritev, fd, offset, iovecs)


def fallocate(fd: int, mode: int, offset: int, length: int) -> None:
    if _fallocate(fd, mode, offset, length) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
