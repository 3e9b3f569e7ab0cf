"""ctypes mirrors of the libvhost-user (QEMU 7.2) structures, and the check against the C ABI.

The layouts are written out by hand from ``libvhost-user.h``; ``check_abi`` compares every
size and offset with ``build/native/abi.json``, written by a C probe compiled against the
same header, so a drifted ABI refuses to load instead of corrupting memory.
"""

from __future__ import annotations

import ctypes
import json
from pathlib import Path

from backend.errors import AbiError

VHOST_MEMORY_BASELINE_NREGIONS = 8
VHOST_USER_MAX_RAM_SLOTS = 32
VIRTQUEUE_MAX_SIZE = 1024


class VuDevRegion(ctypes.Structure):
    """One guest memory region as the library mapped it."""

    _fields_ = [
        ("gpa", ctypes.c_uint64),
        ("size", ctypes.c_uint64),
        ("qva", ctypes.c_uint64),
        ("mmap_offset", ctypes.c_uint64),
        ("mmap_addr", ctypes.c_uint64),
    ]


class VuDevInflightInfo(ctypes.Structure):
    _fields_ = [("fd", ctypes.c_int), ("addr", ctypes.c_void_p), ("size", ctypes.c_uint64)]


class VuDev(ctypes.Structure):
    """The device context: allocated by us, owned by the library between init and deinit."""

    _fields_ = [
        ("sock", ctypes.c_int),
        ("nregions", ctypes.c_uint32),
        ("regions", VuDevRegion * VHOST_USER_MAX_RAM_SLOTS),
        ("vq", ctypes.c_void_p),
        ("inflight_info", VuDevInflightInfo),
        ("log_call_fd", ctypes.c_int),
        ("slave_mutex", ctypes.c_uint64 * 5),  # pthread_mutex_t: 40 bytes, 8-aligned
        ("slave_fd", ctypes.c_int),
        ("log_size", ctypes.c_uint64),
        ("log_table", ctypes.c_void_p),
        ("features", ctypes.c_uint64),
        ("protocol_features", ctypes.c_uint64),
        ("broken", ctypes.c_bool),
        ("max_queues", ctypes.c_uint16),
        ("read_msg", ctypes.c_void_p),
        ("set_watch", ctypes.c_void_p),
        ("remove_watch", ctypes.c_void_p),
        ("panic", ctypes.c_void_p),
        ("iface", ctypes.c_void_p),
        ("postcopy_ufd", ctypes.c_int),
        ("postcopy_listening", ctypes.c_bool),
    ]


class VuRing(ctypes.Structure):
    _fields_ = [
        ("num", ctypes.c_uint),
        ("desc", ctypes.c_void_p),
        ("avail", ctypes.c_void_p),
        ("used", ctypes.c_void_p),
        ("log_guest_addr", ctypes.c_uint64),
        ("flags", ctypes.c_uint32),
    ]


class VhostVringAddr(ctypes.Structure):
    _fields_ = [
        ("index", ctypes.c_uint),
        ("flags", ctypes.c_uint),
        ("desc_user_addr", ctypes.c_uint64),
        ("used_user_addr", ctypes.c_uint64),
        ("avail_user_addr", ctypes.c_uint64),
        ("log_guest_addr", ctypes.c_uint64),
    ]


class VuVirtq(ctypes.Structure):
    """One virtqueue; read for diagnostics (inuse, indices), never written from Python."""

    _fields_ = [
        ("vring", VuRing),
        ("inflight", ctypes.c_void_p),
        ("resubmit_list", ctypes.c_void_p),
        ("resubmit_num", ctypes.c_uint16),
        ("counter", ctypes.c_uint64),
        ("last_avail_idx", ctypes.c_uint16),
        ("shadow_avail_idx", ctypes.c_uint16),
        ("used_idx", ctypes.c_uint16),
        ("signalled_used", ctypes.c_uint16),
        ("signalled_used_valid", ctypes.c_bool),
        ("notification", ctypes.c_bool),
        ("inuse", ctypes.c_int),
        ("handler", ctypes.c_void_p),
        ("call_fd", ctypes.c_int),
        ("kick_fd", ctypes.c_int),
        ("err_fd", ctypes.c_int),
        ("enable", ctypes.c_uint),
        ("started", ctypes.c_bool),
        ("vra", VhostVringAddr),
    ]


class VuVirtqElement(ctypes.Structure):
    """What vu_queue_pop returns: one malloc'd block with both iovec arrays after it."""

    _fields_ = [
        ("index", ctypes.c_uint),
        ("out_num", ctypes.c_uint),
        ("in_num", ctypes.c_uint),
        ("in_sg", ctypes.c_void_p),
        ("out_sg", ctypes.c_void_p),
    ]


class VuDevIface(ctypes.Structure):
    """The device's callbacks, in the header's order (function pointers as void*)."""

    _fields_ = [
        ("get_features", ctypes.c_void_p),
        ("set_features", ctypes.c_void_p),
        ("get_protocol_features", ctypes.c_void_p),
        ("set_protocol_features", ctypes.c_void_p),
        ("process_msg", ctypes.c_void_p),
        ("queue_set_started", ctypes.c_void_p),
        ("queue_is_processed_in_order", ctypes.c_void_p),
        ("get_config", ctypes.c_void_p),
        ("set_config", ctypes.c_void_p),
    ]


class VhostUserMsg(ctypes.Structure):
    """A vhost-user message (packed); only the header is read, in process_msg."""

    _pack_ = 1
    _fields_ = [
        ("request", ctypes.c_int),
        ("flags", ctypes.c_uint32),
        ("size", ctypes.c_uint32),
        ("payload", ctypes.c_uint8 * 272),  # the union's largest member, VhostUserConfig
        ("fds", ctypes.c_int * VHOST_MEMORY_BASELINE_NREGIONS),
        ("fd_num", ctypes.c_int),
        ("data", ctypes.c_void_p),
    ]


MIRRORED: dict[str, type[ctypes.Structure]] = {
    "VuDev": VuDev,
    "VuDevRegion": VuDevRegion,
    "VuVirtq": VuVirtq,
    "VuVirtqElement": VuVirtqElement,
    "VuDevIface": VuDevIface,
    "VhostUserMsg": VhostUserMsg,
}


def layout_mismatches(probe: dict[str, dict[str, int]]) -> list[str]:
    """Every size or offset where the ctypes mirrors disagree with the C probe's output."""
    problems: list[str] = []
    for name, struct in MIRRORED.items():
        measured = probe.get(name)
        if measured is None:
            problems.append(f"{name}: missing from the probe")
            continue
        for field, value in measured.items():
            if field == "sizeof":
                ours = ctypes.sizeof(struct)
            elif hasattr(struct, field):
                ours = getattr(struct, field).offset
            else:
                problems.append(f"{name}.{field}: not mirrored")
                continue
            if ours != value:
                problems.append(f"{name}.{field}: ctypes says {ours}, C says {value}")
    return problems


def check_abi(abi_json: Path) -> None:
    """Raise AbiError unless every mirrored structure matches ``abi_json`` exactly."""
    try:
        probe = json.loads(abi_json.read_text())
    except (OSError, ValueError) as exc:
        raise AbiError(f"cannot read the ABI probe {abi_json} (run `make native`)") from exc
    problems = layout_mismatches(probe)
    if problems:
        raise AbiError("libvhost-user ABI drift: " + "; ".join(problems))
