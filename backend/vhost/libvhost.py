"""Load build/native/libvhost-user.so and declare the functions and callback types vudm uses.

The library is loaded with ``PyDLL``: calls keep the GIL (every vu_* call is short and
runs on the event loop's thread anyway), which saves a release/retake per call on the
hot path. Callbacks from C into Python are ``CFUNCTYPE`` objects; whoever creates one
must keep it referenced for as long as the library may call it.
"""

from __future__ import annotations

import ctypes
import functools
import os
from pathlib import Path
from typing import Any

from backend.errors import AbiError
from backend.vhost.abi import check_abi

NATIVE_DIR = Path(
    os.environ.get("VUDM_NATIVE_DIR", Path(__file__).resolve().parents[2] / "build" / "native")
)
"""Where build.sh puts the library and abi.json (VUDM_NATIVE_DIR overrides it)."""

_p = ctypes.c_void_p
_u16 = ctypes.c_uint16
_u32 = ctypes.c_uint32
_u64 = ctypes.c_uint64

# Callback signatures, exactly as in libvhost-user.h (pointers as void*).
GetFeaturesCb = ctypes.CFUNCTYPE(_u64, _p)
SetFeaturesCb = ctypes.CFUNCTYPE(None, _p, _u64)
ProcessMsgCb = ctypes.CFUNCTYPE(ctypes.c_int, _p, _p, ctypes.POINTER(ctypes.c_int))
QueueSetStartedCb = ctypes.CFUNCTYPE(None, _p, ctypes.c_int, ctypes.c_bool)
QueueInOrderCb = ctypes.CFUNCTYPE(ctypes.c_bool, _p, ctypes.c_int)
GetConfigCb = ctypes.CFUNCTYPE(ctypes.c_int, _p, _p, _u32)
SetConfigCb = ctypes.CFUNCTYPE(ctypes.c_int, _p, _p, _u32, _u32, _u32)
PanicCb = ctypes.CFUNCTYPE(None, _p, ctypes.c_char_p)
SetWatchCb = ctypes.CFUNCTYPE(None, _p, ctypes.c_int, ctypes.c_int, _p, _p)
# The library's own watch callback (vu_kick_cb), called from Python with the GIL kept:
# it reads the eventfd and calls our queue handler straight back.
WatchCall = ctypes.PYFUNCTYPE(None, _p, ctypes.c_int, _p)
RemoveWatchCb = ctypes.CFUNCTYPE(None, _p, ctypes.c_int)
QueueHandlerCb = ctypes.CFUNCTYPE(None, _p, ctypes.c_int)


class Ptr(ctypes.c_void_p):
    """A pointer that a call returns as itself: a ``c_void_p`` restype would convert
    it to an int, which must be wrapped again to be passed back untyped. ``value``
    is the address; a NULL one is false."""


VU_WATCH_IN = 0x001  # POLLIN

# Protocol feature bits the device may add (the library adds the rest itself).
VHOST_USER_PROTOCOL_F_CONFIG = 9
VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD = 12
VHOST_USER_NONE = 0
VHOST_USER_VERSION = 0x1
VHOST_USER_SLAVE_CONFIG_CHANGE_MSG = 2


class LibVhostUser:
    """The loaded library: typed function attributes, nothing else."""

    def __init__(self, path: Path) -> None:
        lib: Any = ctypes.PyDLL(str(path))
        self.path = path
        self.vu_init = lib.vu_init
        self.vu_init.argtypes = [_p, _u16, ctypes.c_int, PanicCb, _p, SetWatchCb,
                                 RemoveWatchCb, _p]
        self.vu_init.restype = ctypes.c_bool
        self.vu_deinit = lib.vu_deinit
        self.vu_deinit.argtypes = [_p]
        self.vu_deinit.restype = None
        self.vu_dispatch = lib.vu_dispatch
        self.vu_dispatch.argtypes = [_p]
        self.vu_dispatch.restype = ctypes.c_bool
        self.vu_get_queue = lib.vu_get_queue
        self.vu_get_queue.argtypes = [_p, ctypes.c_int]
        self.vu_get_queue.restype = _p
        self.vu_set_queue_handler = lib.vu_set_queue_handler
        self.vu_set_queue_handler.argtypes = [_p, _p, _p]
        self.vu_set_queue_handler.restype = None
        self.vu_queue_pop = lib.vu_queue_pop
        self.vu_queue_pop.argtypes = [_p, _p, ctypes.c_size_t]
        self.vu_queue_pop.restype = _p  # the default int would truncate the pointer
        self.vu_queue_push = lib.vu_queue_push
        self.vu_queue_push.argtypes = [_p, _p, _p, ctypes.c_uint]
        self.vu_queue_push.restype = None
        self.vu_queue_notify = lib.vu_queue_notify
        self.vu_queue_notify.argtypes = [_p, _p]
        self.vu_queue_notify.restype = None
        self.vu_queue_started = lib.vu_queue_started
        self.vu_queue_started.argtypes = [_p, _p]
        self.vu_queue_started.restype = ctypes.c_bool
        self.vu_queue_empty = lib.vu_queue_empty
        self.vu_queue_empty.argtypes = [_p, _p]
        self.vu_queue_empty.restype = ctypes.c_bool

        libc: Any = ctypes.PyDLL(None)
        self.free = libc.free
        self.free.argtypes = [_p]
        self.free.restype = None

        # The request path's calls, once or twice per request each: the same functions,
        # untyped. argtypes converts every argument on every call, about half of a
        # call's cost (500 against 220 ns, measured). Untyped, ctypes passes a Python
        # int as a C int, so a pointer given as an int would be cut to 32 bits: these
        # take pointers only as ctypes objects (Ptr, made once for the device and each
        # queue; ``pop`` returns the element as one), and small ints for the rest.
        self.pop = lib["vu_queue_pop"]  # (dev, vq, sz) -> VuVirtqElement* as a Ptr
        self.pop.restype = Ptr
        self.push = lib["vu_queue_push"]  # (dev, vq, elem, len)
        self.push.restype = None
        self.notify = lib["vu_queue_notify"]  # (dev, vq)
        self.notify.restype = None
        self.free_elem = libc["free"]  # (elem)
        self.free_elem.restype = None


@functools.cache
def load(native_dir: Path = NATIVE_DIR) -> LibVhostUser:
    """Load the library once, after checking the ctypes mirrors against abi.json."""
    so = native_dir / "libvhost-user.so"
    if not so.exists():
        raise AbiError(f"{so} is missing: run `make native`")
    check_abi(native_dir / "abi.json")
    return LibVhostUser(so)
