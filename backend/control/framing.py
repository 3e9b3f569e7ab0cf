"""Splitting a byte stream into JSON values the way QEMU's JSON streamer does.

QMP is not line-framed: qemu.qmp sends each message with no newline after it, and QEMU
finds message boundaries by counting brackets outside strings. This splitter does the
same, and like QEMU's lexer it stops at a character that cannot occur in JSON, reports
it, and skips to the end of that line so the next message still gets through.

A message that is too long or nested too deep is not kept: the splitter keeps counting
its brackets (without storing it) and reports it once it ends, so the client gets an
error reply and its next message is read as usual. Parsing refuses what Python's json
would either choke on (integers of thousands of digits, nesting near the recursion
limit) or accept although it is not JSON (``Infinity``, ``NaN``, ``1e999``).
"""

from __future__ import annotations

import json
import math
import re

from backend.errors import ProtocolError

MAX_DEPTH = 64
"""Deepest nesting of a message (QMP messages are a few levels deep)."""
MAX_INT_DIGITS = 1000
"""Longest integer literal: enough for anything out of range to get a reply that says
so (a 401-digit timeout is refused by the command), far below Python's 4,300."""

_WHITESPACE = frozenset(b" \t\r\n")
# Outside strings a JSON container holds only punctuation, numbers and literals: the
# next byte that is not one of those, or that opens a string or a container, matters.
_VALUE_STOP = re.compile(rb'[{}\[\]"]|[^,:\-+.0-9eEtruefalsn \t\r\n]')
_STRING_BODY = re.compile(rb'(?:[^"\\]|\\.)*', re.DOTALL)


class JSONSplitter:
    """Feed bytes, get back complete top-level JSON values (or a ProtocolError each)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._buf = bytearray()
        self._depth = 0
        self._in_string = False
        self._escaped = False
        self._skip_line = False
        self._discard: str | None = None
        """Why the message being read will be refused (it is counted, not stored)."""

    def feed(self, data: bytes) -> list[object]:
        """Values completed by ``data``, in order; malformed ones as ProtocolError.

        The bytes between two that matter (a quote, a bracket, a backslash in a string)
        are found by a regular expression and kept in one slice: a 1 MiB string costs
        a few C-speed searches, not a million Python steps on the daemon's loop.
        """
        out: list[object] = []
        i, n = 0, len(data)
        while i < n:
            if self._skip_line:
                j = data.find(b"\n", i)
                if j < 0:
                    break
                self._skip_line = False
                i = j + 1
            elif self._depth == 0:
                byte = data[i]
                i += 1
                if byte in _WHITESPACE:
                    continue
                if byte in b"{[":
                    self._buf.append(byte)
                    self._depth = 1
                    continue
                out.append(self._fail(byte, f"unexpected character {chr(byte)!r}"))
            elif self._escaped:
                self._keep(data[i:i + 1])
                self._escaped = False
                i += 1
            elif self._in_string:
                # The string's body, escapes included, up to its closing quote (or to a
                # backslash that is the last byte we have).
                j = _STRING_BODY.match(data, i).end()  # type: ignore[union-attr]
                if j == n:
                    self._keep(data[i:])
                    break
                self._keep(data[i:j + 1])
                i = j + 1
                if data[j] == 0x5C:  # backslash
                    self._escaped = True
                else:
                    self._in_string = False
            else:
                m = _VALUE_STOP.search(data, i)
                if m is None:
                    self._keep(data[i:])
                    break
                j = m.start()
                byte = data[j]
                self._keep(data[i:j + 1])
                i = j + 1
                if byte == 0x22:  # quote
                    self._in_string = True
                elif byte in b"{[":
                    self._depth += 1
                    if self._depth > MAX_DEPTH and self._discard is None:
                        self._start_discard(f"message nested deeper than {MAX_DEPTH} levels")
                elif byte in b"}]":
                    self._depth -= 1
                    if self._depth == 0:
                        out.append(self._complete())
                else:
                    out.append(self._fail(byte, f"invalid character {chr(byte)!r}"))
        return out

    def _keep(self, chunk: bytes) -> None:
        if self._discard is None:
            self._buf += chunk
            if len(self._buf) > self.limit:
                self._start_discard(f"message longer than {self.limit} bytes")

    def _start_discard(self, reason: str) -> None:
        self._discard = reason
        self._buf.clear()

    def _complete(self) -> object:
        text = bytes(self._buf)
        self._buf.clear()
        if self._discard is not None:
            reason, self._discard = self._discard, None
            return ProtocolError(f"JSON parse error, {reason}")
        try:
            return json.loads(text, parse_int=_parse_int, parse_float=_parse_float,
                              parse_constant=_refuse_constant)
        except (ValueError, RecursionError) as e:  # JSONDecodeError is a ValueError
            return ProtocolError(f"JSON parse error, {_cut(str(e))}")

    def _fail(self, byte: int, reason: str) -> ProtocolError:
        self._buf.clear()
        self._depth = 0
        self._in_string = self._escaped = False
        self._discard = None
        self._skip_line = byte != 0x0A
        return ProtocolError(f"JSON parse error, {reason}")


def _parse_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise ValueError(f"number with {len(text)} digits (at most {MAX_INT_DIGITS})")
    return int(text)


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {_cut(text)} is out of range")
    return value


def _refuse_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def _cut(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit] + "..."
