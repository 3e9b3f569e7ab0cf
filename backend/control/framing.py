"""Splitting a byte stream into JSON values the way QEMU's JSON streamer does.

QMP is not line-framed: qemu.qmp sends each message with no newline after it, and QEMU
finds message boundaries by counting brackets outside strings. This splitter does the
same, and like QEMU's lexer it stops at a character that cannot occur in JSON, reports
it, and skips to the end of that line so the next message still gets through.
"""

from __future__ import annotations

import json

from .errors import ProtocolError

_WHITESPACE = frozenset(b" \t\r\n")
# Outside strings a JSON container holds only these: punctuation, numbers, literals.
_VALUE_CHARS = frozenset(b"{}[],:-+.0123456789eE" b"truefalsn" b" \t\r\n")


class JSONSplitter:
    """Feed bytes, get back complete top-level JSON values (or a ProtocolError each)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._buf = bytearray()
        self._depth = 0
        self._in_string = False
        self._escaped = False
        self._skip_line = False

    def feed(self, data: bytes) -> list[object]:
        """Values completed by ``data``, in order; malformed ones as ProtocolError."""
        out: list[object] = []
        for byte in data:
            if self._skip_line:
                self._skip_line = byte != 0x0A
                continue
            if self._depth == 0:
                if byte in _WHITESPACE:
                    continue
                if byte in b"{[":
                    self._buf.append(byte)
                    self._depth = 1
                    continue
                out.append(self._fail(byte, f"unexpected character {chr(byte)!r}"))
                continue
            self._buf.append(byte)
            if len(self._buf) > self.limit:
                out.append(self._fail(byte, f"message longer than {self.limit} bytes"))
            elif self._in_string:
                if self._escaped:
                    self._escaped = False
                elif byte == 0x5C:  # backslash
                    self._escaped = True
                elif byte == 0x22:  # quote
                    self._in_string = False
            elif byte == 0x22:
                self._in_string = True
            elif byte in b"{[":
                self._depth += 1
            elif byte in b"}]":
                self._depth -= 1
                if self._depth == 0:
                    out.append(self._complete())
            elif byte not in _VALUE_CHARS:
                out.append(self._fail(byte, f"invalid character {chr(byte)!r}"))
        return out

    def _complete(self) -> object:
        text = bytes(self._buf)
        self._buf.clear()
        try:
            return json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            return ProtocolError(f"JSON parse error, {e}")

    def _fail(self, byte: int, reason: str) -> ProtocolError:
        self._buf.clear()
        self._depth = 0
        self._in_string = self._escaped = False
        self._skip_line = byte != 0x0A
        return ProtocolError(f"JSON parse error, {reason}")
