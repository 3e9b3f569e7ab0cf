"""The NBD wire protocol, as much as a fixed-newstyle client with NBD_OPT_GO needs.

Pure packing and parsing; the socket handling is in nbd.py. Numbers are from the NBD
protocol document (doc/proto.md of the nbd project); everything is big-endian.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ..errors import DeviceError

NBDMAGIC = 0x4E42444D41474943
IHAVEOPT = 0x49484156454F5054
OPT_REPLY_MAGIC = 0x3E889045565A9
REQUEST_MAGIC = 0x25609513
SIMPLE_REPLY_MAGIC = 0x67446698

FLAG_FIXED_NEWSTYLE = 1 << 0
FLAG_NO_ZEROES = 1 << 1

OPT_GO = 7
REP_ACK = 1
REP_INFO = 3
REP_ERR_BIT = 1 << 31
INFO_EXPORT = 0
INFO_BLOCK_SIZE = 3

# transmission flags
TF_HAS_FLAGS = 1 << 0
TF_READ_ONLY = 1 << 1
TF_SEND_FLUSH = 1 << 2
TF_SEND_FUA = 1 << 3
TF_SEND_TRIM = 1 << 5
TF_SEND_WRITE_ZEROES = 1 << 6

CMD_READ = 0
CMD_WRITE = 1
CMD_DISC = 2
CMD_FLUSH = 3
CMD_TRIM = 4
CMD_WRITE_ZEROES = 6
CMD_FLAG_FUA = 1 << 0

REQUEST = struct.Struct(">IHHQQI")  # magic, flags, type, cookie, offset, length
SIMPLE_REPLY = struct.Struct(">IIQ")  # magic, error, cookie

_REP_ERRORS = {
    REP_ERR_BIT | 1: "unsupported option",
    REP_ERR_BIT | 2: "policy refused",
    REP_ERR_BIT | 3: "invalid",
    REP_ERR_BIT | 5: "shutting down",
    REP_ERR_BIT | 6: "unknown export",
    REP_ERR_BIT | 7: "too big",
}


@dataclass(frozen=True)
class ExportInfo:
    size: int
    flags: int

    @property
    def read_only(self) -> bool:
        return bool(self.flags & TF_READ_ONLY)


def server_greeting(data: bytes) -> int:
    """Check the 18-byte newstyle greeting; return the handshake flags."""
    magic, opt, flags = struct.unpack(">QQH", data)
    if magic != NBDMAGIC or opt != IHAVEOPT:
        raise DeviceError("NBD server did not send a newstyle greeting")
    if not flags & FLAG_FIXED_NEWSTYLE:
        raise DeviceError("NBD server does not support fixed newstyle negotiation")
    return int(flags)


def client_flags(server_flags: int) -> bytes:
    return struct.pack(">I", FLAG_FIXED_NEWSTYLE | (server_flags & FLAG_NO_ZEROES))


def opt_go(export: str) -> bytes:
    name = export.encode()
    payload = struct.pack(">I", len(name)) + name + struct.pack(">HH", 1, INFO_BLOCK_SIZE)
    return struct.pack(">QII", IHAVEOPT, OPT_GO, len(payload)) + payload


def option_reply_header(data: bytes) -> tuple[int, int]:
    """Parse a 20-byte option reply header; return (reply type, payload length)."""
    magic, _opt, rtype, length = struct.unpack(">QIII", data)
    if magic != OPT_REPLY_MAGIC:
        raise DeviceError("NBD server sent a bad option reply")
    return int(rtype), int(length)


def option_error(rtype: int, payload: bytes, export: str) -> DeviceError:
    what = _REP_ERRORS.get(rtype, f"error {rtype & ~REP_ERR_BIT}")
    msg = payload.decode(errors="replace")
    return DeviceError(f"NBD export {export!r}: {what}" + (f": {msg}" if msg else ""))


def request(cmd: int, cookie: int, offset: int, length: int, flags: int = 0) -> bytes:
    return REQUEST.pack(REQUEST_MAGIC, flags, cmd, cookie, offset, length)
