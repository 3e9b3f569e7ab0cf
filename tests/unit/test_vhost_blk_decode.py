"""The virtio-blk decoder against well-formed and malformed requests, without QEMU."""

from __future__ import annotations

import struct

import pytest

from backend.blockio import Op, Status
from backend.vhost import virtio_blk as vb
from backend.vhost.virtio_blk import BlkGeometry, BlkRequest, Rejection, decode_request

GEO = BlkGeometry(capacity=2048)  # 1 MiB
RO = BlkGeometry(capacity=2048, writable=False)


def hdr(rtype: int, sector: int = 0) -> bytes:
    return vb.OUTHDR.pack(rtype, 0, sector)


def seg(sector: int, nr: int, flags: int = 0) -> bytes:
    return vb.SEGMENT.pack(sector, nr, flags)


def test_read() -> None:
    req = decode_request(hdr(vb.T_IN, 8), 16, 4096 + 1, GEO)
    assert req == BlkRequest(vb.T_IN, Op.READ, 8, 8, 4096, 4097)


def test_write() -> None:
    req = decode_request(hdr(vb.T_OUT, 2040), 16 + 4096, 1, GEO)
    assert req == BlkRequest(vb.T_OUT, Op.WRITE, 2040, 8, 4096, 1)


def test_barrier_flag_is_ignored() -> None:
    req = decode_request(hdr(vb.T_IN | vb.T_BARRIER), 16, 513, GEO)
    assert isinstance(req, BlkRequest) and req.op is Op.READ


def test_flush_and_get_id() -> None:
    assert decode_request(hdr(vb.T_FLUSH), 16, 1, GEO) == BlkRequest(
        vb.T_FLUSH, Op.FLUSH, 0, 0, 0, 1)
    get_id = decode_request(hdr(vb.T_GET_ID), 16, 21, GEO)
    assert isinstance(get_id, BlkRequest) and get_id.op is None and get_id.data_len == 20
    assert decode_request(hdr(vb.T_GET_ID), 16, 8, RO) == BlkRequest(
        vb.T_GET_ID, None, 0, 0, 7, 8)


def test_discard_and_write_zeroes() -> None:
    d = decode_request(hdr(vb.T_DISCARD) + seg(0, 2048), 32, 1, GEO)
    assert d == BlkRequest(vb.T_DISCARD, Op.DISCARD, 0, 2048, 0, 1)
    wz = decode_request(hdr(vb.T_WRITE_ZEROES) + seg(8, 8, 1), 32, 1, GEO)
    assert wz == BlkRequest(vb.T_WRITE_ZEROES, Op.WRITE_ZEROES, 8, 8, 0, 1, unmap=True)


MALFORMED = [
    # (name, head, out_len, in_len, geometry, status, reason fragment)
    ("no status byte", hdr(vb.T_IN), 16, 0, GEO, None, "no status byte"),
    ("short header", hdr(vb.T_IN)[:8], 8, 1, GEO, vb.S_IOERR, "header is 8 bytes"),
    ("empty out side", b"", 0, 513, GEO, vb.S_IOERR, "header is 0 bytes"),
    ("read not a multiple of 512", hdr(vb.T_IN), 16, 100 + 1, GEO, vb.S_IOERR, "multiple"),
    ("write not a multiple of 512", hdr(vb.T_OUT), 16 + 1000, 1, GEO, vb.S_IOERR, "multiple"),
    ("read past capacity", hdr(vb.T_IN, 2047), 16, 1024 + 1, GEO, vb.S_IOERR, "past"),
    ("read starting past capacity", hdr(vb.T_IN, 4096), 16, 1, GEO, vb.S_IOERR, "past"),
    ("write past capacity", hdr(vb.T_OUT, 2048), 16 + 512, 1, GEO, vb.S_IOERR, "past"),
    ("huge sector", hdr(vb.T_IN, 2**64 - 1), 16, 513, GEO, vb.S_IOERR, "past"),
    ("unknown type", hdr(42), 16, 1, GEO, vb.S_UNSUPP, "unsupported request type 42"),
    ("get lifetime", hdr(10), 16, 1, GEO, vb.S_UNSUPP, "unsupported"),
    ("write to read-only", hdr(vb.T_OUT), 16 + 512, 1, RO, vb.S_IOERR, "read-only"),
    ("discard on read-only", hdr(vb.T_DISCARD) + seg(0, 8), 32, 1, RO, vb.S_IOERR,
     "read-only"),
    ("write-zeroes on read-only", hdr(vb.T_WRITE_ZEROES) + seg(0, 8), 32, 1, RO,
     vb.S_IOERR, "read-only"),
    ("two discard segments", hdr(vb.T_DISCARD) + seg(0, 8), 48, 1, GEO, vb.S_UNSUPP,
     "2 segments"),
    ("truncated discard segment", hdr(vb.T_DISCARD) + seg(0, 8)[:8], 24, 1, GEO,
     vb.S_IOERR, "segment is 8 bytes"),
    ("discard without segment", hdr(vb.T_DISCARD), 16, 1, GEO, vb.S_IOERR, "segment is 0"),
    ("discard past capacity", hdr(vb.T_DISCARD) + seg(2040, 16), 32, 1, GEO, vb.S_IOERR,
     "past"),
    ("discard too long", hdr(vb.T_DISCARD) + seg(0, 40000), 32, 1,
     BlkGeometry(capacity=1 << 30), vb.S_IOERR, "max 32768"),
    ("discard with unmap", hdr(vb.T_DISCARD) + seg(0, 8, 1), 32, 1, GEO, vb.S_UNSUPP,
     "unmap"),
    ("write-zeroes unknown flag", hdr(vb.T_WRITE_ZEROES) + seg(0, 8, 2), 32, 1, GEO,
     vb.S_UNSUPP, "unknown flags"),
    ("misaligned for 4k blocks", hdr(vb.T_IN, 1), 16, 4097,
     BlkGeometry(capacity=2048, blk_size=4096), vb.S_IOERR, "aligned"),
]


@pytest.mark.parametrize(("name", "head", "out_len", "in_len", "geo", "status", "reason"),
                         MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed(name: str, head: bytes, out_len: int, in_len: int, geo: BlkGeometry,
                   status: int | None, reason: str) -> None:
    rej = decode_request(head, out_len, in_len, geo)
    assert isinstance(rej, Rejection), name
    assert rej.status == status
    assert reason in rej.reason
    assert rej.used_len == (in_len if status is not None else 0)


def test_read_only_still_reads_and_flushes() -> None:
    assert isinstance(decode_request(hdr(vb.T_IN), 16, 513, RO), BlkRequest)
    assert isinstance(decode_request(hdr(vb.T_FLUSH), 16, 1, RO), BlkRequest)


def test_status_byte_mapping() -> None:
    assert vb.status_byte(Status.OK) == vb.S_OK
    assert vb.status_byte(Status.EOPNOTSUPP) == vb.S_UNSUPP
    for st in (Status.EIO, Status.ENOSPC, Status.REQUEUE, Status.EROFS, Status.ETIMEDOUT):
        assert vb.status_byte(st) == vb.S_IOERR


def test_data_iovecs_common_layout() -> None:
    read = BlkRequest(vb.T_IN, Op.READ, 0, 16, 8192, 8193)
    in_sg = [(0x1000, 4096), (0x3000, 4096), (0x9000, 1)]
    assert vb.data_iovecs(read, [(0x500, 16)], in_sg) == in_sg[:2]
    assert vb.status_address(in_sg) == 0x9000
    write = BlkRequest(vb.T_OUT, Op.WRITE, 0, 8, 4096, 1)
    assert vb.data_iovecs(write, [(0x500, 16), (0x1000, 4096)], [(0x9000, 1)]) == [
        (0x1000, 4096)]


def test_data_iovecs_shared_descriptors() -> None:
    # Header and data in one descriptor; data and status byte in one descriptor.
    write = BlkRequest(vb.T_OUT, Op.WRITE, 0, 2, 1024, 1)
    assert vb.data_iovecs(write, [(0x100, 16 + 600), (0x2000, 424)], [(0x9000, 1)]) == [
        (0x110, 600), (0x2000, 424)]
    read = BlkRequest(vb.T_IN, Op.READ, 0, 2, 1024, 1025)
    in_sg = [(0x1000, 1000), (0x5000, 25)]
    assert vb.data_iovecs(read, [(0x100, 16)], in_sg) == [(0x1000, 1000), (0x5000, 24)]
    assert vb.status_address(in_sg) == 0x5000 + 24


def test_config_space() -> None:
    geo = BlkGeometry(capacity=123456, num_queues=4, writable=False)
    raw = geo.config(57)
    assert len(raw) == 57
    assert struct.unpack_from("<Q", raw, 0)[0] == 123456
    size_max, seg_max = struct.unpack_from("<II", raw, 8)
    assert size_max * seg_max >= 1 << 20 and seg_max >= 256 + 2
    assert struct.unpack_from("<I", raw, 20)[0] == 512
    assert struct.unpack_from("<H", raw, 34)[0] == 4
    assert struct.unpack_from("<II", raw, 36) == (32768, 1)
    assert raw[56] == 1
    assert len(geo.config(64)) == 64
    feats = geo.features()
    assert feats & (1 << vb.F_RO) and feats & (1 << vb.F_FLUSH) and feats & (1 << vb.F_MQ)
    assert not BlkGeometry(capacity=1).features() & (1 << vb.F_RO)
