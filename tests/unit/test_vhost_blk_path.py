"""VirtioBlkDevice's request path, from a virtqueue element in memory to the used ring.

Elements are laid out as libvhost-user lays them out (VuVirtqElement: index, out_num,
in_num, in_sg, out_sg; the in iovecs then the out iovecs); only the library's pop, push,
notify and free are stand-ins. Both the common-shape fast path (header alone, status
byte alone) and the general decoder are driven, into a mapped device over memory, so a
shape the fast path takes wrongly shows as a wrong byte, status or used length.
"""

from __future__ import annotations

import asyncio
import ctypes
import struct
from typing import Any

import pytest

import backend.targets  # noqa: F401  (registers linear)
from backend.blockio import Bio, Op, Status
from backend.devices.mem import MemDevice
from backend.dm.mapped_device import MappedDevice
from backend.dm.table import parse_table
from backend.vhost import virtio_blk as vb
from backend.vhost.blk import VirtioBlkDevice
from backend.vhost.libvhost import Ptr

DISK = 1 << 20
_ELEM = struct.Struct("<III4xQQ")


class FakeLib:
    """pop/push/notify/free as the untyped real ones take them: pointers as ctypes
    objects (the real calls raise ArgumentError for an int too long to convert)."""

    def __init__(self) -> None:
        self.avail: list[int] = []
        self.used: list[tuple[int, int]] = []
        self.notified = 0

    def pop(self, dev: Ptr, vq: Ptr, _size: int) -> Ptr:
        assert isinstance(dev, ctypes.c_void_p) and isinstance(vq, ctypes.c_void_p)
        return Ptr(self.avail.pop(0) if self.avail else 0)

    def push(self, dev: Ptr, vq: Ptr, elem: Ptr, length: int) -> None:
        assert all(isinstance(p, ctypes.c_void_p) for p in (dev, vq, elem))
        self.used.append((elem.value or 0, length))

    def notify(self, dev: Ptr, vq: Ptr) -> None:
        assert isinstance(dev, ctypes.c_void_p) and isinstance(vq, ctypes.c_void_p)
        self.notified += 1

    def free_elem(self, elem: Ptr) -> None:
        assert isinstance(elem, ctypes.c_void_p)


class Memory:
    """Guest memory for a few requests: buffers handed out by address."""

    def __init__(self) -> None:
        self.raw = ctypes.create_string_buffer(1 << 18)
        self.next = (ctypes.addressof(self.raw) + 4095) & ~4095

    def alloc(self, n: int, data: bytes = b"") -> int:
        addr = self.next
        self.next += (n + 511) & ~511
        ctypes.memmove(addr, data.ljust(n, b"\0")[:n], n)
        return addr

    def element(self, in_sg: list[tuple[int, int]], out_sg: list[tuple[int, int]]) -> int:
        iovs = self.alloc(16 * (len(in_sg) + len(out_sg)))
        flat = [x for iov in in_sg + out_sg for x in iov]
        ctypes.memmove(iovs, struct.pack(f"<{len(flat)}Q", *flat), 8 * len(flat))
        elem = self.alloc(_ELEM.size)
        ctypes.memmove(elem, _ELEM.pack(0, len(out_sg), len(in_sg), iovs,
                                        iovs + 16 * len(in_sg)), _ELEM.size)
        return elem


@pytest.fixture
def rig() -> Any:
    mem_dev = MemDevice("m", DISK)
    md = MappedDevice("vol")
    md.create(parse_table(f"0 {DISK // 512} linear m 0", lambda _n: mem_dev))
    lib = FakeLib()
    blk = VirtioBlkDevice(md, lib=lib, serial="vudm-serial")  # type: ignore[arg-type]
    blk._running = True
    blk._started[0] = True
    blk._vqs[0] = 1
    blk._vq_ptrs[0] = Ptr(1)

    class Rig:
        pass

    r = Rig()
    r.mem, r.dev, r.blk, r.lib, r.guest = mem_dev, md, blk, lib, Memory()  # type: ignore
    return r


def run(rig: Any, elem: int) -> tuple[int, int]:
    rig.lib.avail.append(elem)
    rig.blk.process_queue(0)
    assert rig.lib.used and rig.lib.used[-1][0] == elem
    assert rig.blk.in_flight == 0
    return rig.lib.used[-1]


def hdr(rtype: int, sector: int) -> bytes:
    return vb.OUTHDR.pack(rtype, 0, sector)


@pytest.mark.parametrize("split_data", [False, True])
def test_write_then_read_common_shape(rig: Any, split_data: bool) -> None:
    g = rig.guest
    payload = bytes(range(256)) * 16
    status = g.alloc(1, b"\xff")
    data = ([(g.alloc(4096, payload), 4096)] if not split_data else
            [(g.alloc(1024, payload[:1024]), 1024), (g.alloc(3072, payload[1024:]), 3072)])
    elem = g.element([(status, 1)], [(g.alloc(16, hdr(vb.T_OUT, 16)), 16), *data])
    assert run(rig, elem)[1] == 1
    assert ctypes.string_at(status, 1) == b"\0"
    assert rig.mem.read(16 * 512, 4096) == payload
    buf, status2 = g.alloc(4096), g.alloc(1, b"\xff")
    elem = g.element([(buf, 4096), (status2, 1)], [(g.alloc(16, hdr(vb.T_IN, 16)), 16)])
    assert run(rig, elem)[1] == 4097
    assert ctypes.string_at(status2, 1) == b"\0"
    assert ctypes.string_at(buf, 4096) == payload


def test_read_with_status_sharing_the_data_buffer(rig: Any) -> None:
    """Not the common shape: the general decoder slices the status byte off."""
    g = rig.guest
    rig.mem.write(0, b"x" * 512)
    buf = g.alloc(513, b"\xff" * 513)
    elem = g.element([(buf, 513)], [(g.alloc(16, hdr(vb.T_IN, 0)), 16)])
    assert run(rig, elem)[1] == 513
    assert ctypes.string_at(buf, 513) == b"x" * 512 + b"\0"


def test_header_split_across_buffers(rig: Any) -> None:
    g = rig.guest
    rig.mem.write(512, b"y" * 512)
    h = hdr(vb.T_IN, 1)
    buf, status = g.alloc(512), g.alloc(1, b"\xff")
    elem = g.element([(buf, 512), (status, 1)], [(g.alloc(8, h[:8]), 8),
                                                 (g.alloc(8, h[8:]), 8)])
    assert run(rig, elem)[1] == 513
    assert ctypes.string_at(status, 1) == b"\0"
    assert ctypes.string_at(buf, 512) == b"y" * 512


@pytest.mark.parametrize("sector,nbytes", [(DISK // 512 - 1, 1024), (DISK // 512, 512),
                                           (0, 100)])
def test_out_of_range_or_ragged_read_is_rejected_with_ioerr(rig: Any, sector: int,
                                                            nbytes: int) -> None:
    g = rig.guest
    buf, status = g.alloc(nbytes), g.alloc(1, b"\xff")
    elem = g.element([(buf, nbytes), (status, 1)], [(g.alloc(16, hdr(vb.T_IN, sector)), 16)])
    assert run(rig, elem)[1] == nbytes + 1
    assert ctypes.string_at(status, 1)[0] == vb.S_IOERR
    assert rig.blk.rejected == 1
    assert not rig.mem.ops


def test_write_to_read_only_export_is_rejected(rig: Any) -> None:
    g = rig.guest
    rig.blk.writable = False
    rig.blk.geometry = rig.blk._geometry()
    status = g.alloc(1, b"\xff")
    elem = g.element([(status, 1)], [(g.alloc(16, hdr(vb.T_OUT, 0)), 16),
                                     (g.alloc(512, b"z" * 512), 512)])
    run(rig, elem)
    assert ctypes.string_at(status, 1)[0] == vb.S_IOERR
    assert rig.mem.read(0, 512) == b"\0" * 512


def test_get_id_and_flush(rig: Any) -> None:
    g = rig.guest
    buf, status = g.alloc(20), g.alloc(1, b"\xff")
    elem = g.element([(buf, 20), (status, 1)], [(g.alloc(16, hdr(vb.T_GET_ID, 0)), 16)])
    run(rig, elem)
    assert ctypes.string_at(buf, 20) == b"vudm-serial".ljust(20, b"\0")
    assert ctypes.string_at(status, 1) == b"\0"
    status = g.alloc(1, b"\xff")
    run(rig, g.element([(status, 1)], [(g.alloc(16, hdr(vb.T_FLUSH, 0)), 16)]))
    assert ctypes.string_at(status, 1) == b"\0"


def test_error_status_reaches_the_guest(rig: Any) -> None:
    """An error from below (here: the mapped device gone) is an IOERR status byte."""
    g = rig.guest
    rig.dev.remove(force=True)
    buf, status = g.alloc(512), g.alloc(1, b"\xff")
    elem = g.element([(buf, 512), (status, 1)], [(g.alloc(16, hdr(vb.T_IN, 0)), 16)])
    run(rig, elem)
    assert ctypes.string_at(status, 1)[0] == vb.S_IOERR


def test_write_with_the_write_cache_off_is_flushed_before_it_completes(rig: Any) -> None:
    """CONFIG_WCE off: every write is FUA, emulated below as the write then a flush."""
    g = rig.guest
    rig.blk.wce = False
    status = g.alloc(1, b"\xff")
    elem = g.element([(status, 1)], [(g.alloc(16, hdr(vb.T_OUT, 0)), 16),
                                     (g.alloc(512, b"w" * 512), 512)])
    run(rig, elem)
    assert ctypes.string_at(status, 1) == b"\0"
    assert rig.mem.ops[Op.WRITE] == 1 and rig.mem.ops[Op.FLUSH] == 1
    rig.blk.wce = True
    status = g.alloc(1, b"\xff")
    elem = g.element([(status, 1)], [(g.alloc(16, hdr(vb.T_OUT, 1)), 16),
                                     (g.alloc(512, b"v" * 512), 512)])
    run(rig, elem)
    assert rig.mem.ops[Op.WRITE] == 2 and rig.mem.ops[Op.FLUSH] == 1


def test_a_batch_of_completions_notifies_the_guest_once(rig: Any) -> None:
    """Requests completed inside one plugged batch (here: one kick, a device completing
    inline) are pushed one by one and the guest is notified once, after the last."""
    g = rig.guest
    statuses = []
    for i in range(4):
        buf, status = g.alloc(512), g.alloc(1, b"\xff")
        statuses.append(status)
        rig.lib.avail.append(g.element([(buf, 512), (status, 1)],
                                       [(g.alloc(16, hdr(vb.T_IN, i)), 16)]))
    rig.blk.process_queue(0)
    assert len(rig.lib.used) == 4
    assert rig.lib.notified == 1
    assert all(ctypes.string_at(s, 1) == b"\0" for s in statuses)
    rig.lib.avail.append(g.element([(g.alloc(512), 512), (g.alloc(1, b"\xff"), 1)],
                                   [(g.alloc(16, hdr(vb.T_IN, 9)), 16)]))
    rig.blk.process_queue(0)
    assert rig.lib.notified == 2


@pytest.mark.parametrize("nsegs", [7, 8, 64])
def test_many_segments_travel_as_the_elements_own_iovec_array(rig: Any, nsegs: int) -> None:
    """From _MANY segments on, the bio's iovecs are an IovArray at the element's own
    ``struct iovec`` array (what the AIO iocb points at), holding the same segments;
    below that, a plain list. Either way the bytes land and come back."""
    from backend.blockio import IovArray

    g = rig.guest
    seen: list[Any] = []
    submit = rig.dev.submit_bio
    rig.dev.submit_bio = lambda bio: (seen.append(bio.iovecs), submit(bio))[1]
    payload = bytes(range(256)) * 2 * nsegs
    segs = [(g.alloc(512, payload[i * 512:(i + 1) * 512]), 512) for i in range(nsegs)]
    status = g.alloc(1, b"\xff")
    elem = g.element([(status, 1)], [(g.alloc(16, hdr(vb.T_OUT, 8)), 16), *segs])
    assert run(rig, elem)[1] == 1
    assert rig.mem.read(8 * 512, 512 * nsegs) == payload
    bufs = [(g.alloc(512), 512) for _ in range(nsegs)]
    status = g.alloc(1, b"\xff")
    elem = g.element([*bufs, (status, 1)], [(g.alloc(16, hdr(vb.T_IN, 8)), 16)])
    assert run(rig, elem)[1] == 512 * nsegs + 1
    assert b"".join(ctypes.string_at(b, 512) for b, _ in bufs) == payload
    in_sg = _ELEM.unpack(ctypes.string_at(elem, _ELEM.size))[3]
    write_iovecs, read_iovecs = seen
    assert list(write_iovecs) == segs and list(read_iovecs) == bufs
    if nsegs < 8:
        assert type(read_iovecs) is list
        return
    assert isinstance(write_iovecs, IovArray) and isinstance(read_iovecs, IovArray)
    assert read_iovecs.addr == in_sg  # the data iovecs come first on the in side
    assert ctypes.string_at(read_iovecs.addr, 16 * nsegs) == read_iovecs.raw
    flat = [x for iov in bufs for x in iov]
    assert read_iovecs.raw == struct.pack(f"<{2 * nsegs}Q", *flat)
    assert ctypes.string_at(write_iovecs.addr, 16 * nsegs) == write_iovecs.raw


def test_wait_idle_returns_to_every_waiter_when_the_last_request_ends() -> None:
    """The drain before a disconnect: no Event is kept up to date per request, so the
    waiters must still see the last completion (two of them: close and disconnect)."""

    class HoldingSink:
        size_sectors = DISK // 512

        def __init__(self) -> None:
            self.held: list[Bio] = []

        def submit_bio(self, bio: Bio) -> None:
            self.held.append(bio)

    async def main() -> None:
        sink, lib, g = HoldingSink(), FakeLib(), Memory()
        blk = VirtioBlkDevice(sink, lib=lib)  # type: ignore[arg-type]
        blk._running = True
        blk._started[0] = True
        blk._vqs[0] = 1
        blk._vq_ptrs[0] = Ptr(1)
        for _ in range(2):
            lib.avail.append(g.element([(g.alloc(4096), 4096), (g.alloc(1, b"\xff"), 1)],
                                       [(g.alloc(16, hdr(vb.T_IN, 8)), 16)]))
        blk.process_queue(0)
        assert blk.in_flight == 2
        waiters = [asyncio.ensure_future(blk.wait_idle()) for _ in range(2)]

        async def finish() -> None:
            # A task made after the waiters runs after them: both wait on the Event now.
            idle = blk._idle
            assert idle is not None
            sink.held.pop().done(Status.OK)
            assert blk._idle is idle and not idle.is_set()  # one is still in flight
            sink.held.pop().done(Status.OK)
            assert idle.is_set()

        await asyncio.wait_for(asyncio.gather(*waiters, finish()), 5.0)
        assert blk.in_flight == 0 and len(lib.used) == 2

    asyncio.run(main())
