"""What vudm accepts from outside: names, numbers, sizes and text (DESIGN "Input limits").

One place for the rules, used by every layer that reads input: the QMP schema checks
command arguments with them, the table parser and the targets read numbers with them,
device URIs are checked with them. Each check raises :class:`LimitError` with a message
that says what was wrong, quoting the offending value only in part (a 1 MiB name must
not become a 1 MiB reply or log line).
"""

from __future__ import annotations

import re

from .errors import LimitError

MAX_NAME = 128
NAME_CHARS = "A-Za-z0-9_.:+-"
_NAME_RE = re.compile(f"[{NAME_CHARS}]{{1,{MAX_NAME}}}")

MAX_U63 = (1 << 63) - 1
"""Sizes, sector counts and offsets fit in 63 bits (an off_t, a Linux sector_t)."""
MAX_DIGITS = len(str(MAX_U63))
MAX_TEXT = 16 << 20
"""Longest string argument (a table of many lines); the QMP message limit is the same."""
MAX_WORD = 4096
"""Longest word of a table line or a message (PATH_MAX: a path is the longest there is)."""
MAX_NUM_QUEUES = 1024
MAX_SECONDS = 10**9
"""Longest timeout a command takes (about 31 years: "forever" without overflowing)."""

_ASCII_DIGITS = frozenset("0123456789")


def show(value: object, limit: int = 40) -> str:
    """``repr(value)``, cut to about ``limit`` characters for messages and logs."""
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(value) if isinstance(value, str | bytes) else len(text)}" \
           f"{' characters' if isinstance(value, str) else ''})"


def check_name(value: str, what: str = "name") -> str:
    """A device, mapped-device or export name: 1-128 of [A-Za-z0-9_.:+-], not . or .."""
    if not _NAME_RE.fullmatch(value) or value in (".", ".."):
        raise LimitError(f"invalid {what} {show(value)}: names are 1-{MAX_NAME} characters"
                         f" of {NAME_CHARS}, not '.' or '..'")
    return value


def check_text(value: str, what: str = "string") -> str:
    """Any string from outside: no NUL, no lone surrogate (they cannot be a path, a
    socket address or UTF-8), at most :data:`MAX_TEXT` characters."""
    if len(value) > MAX_TEXT:
        raise LimitError(f"{what} is {len(value)} characters long, the limit is {MAX_TEXT}")
    if "\0" in value:
        raise LimitError(f"{what} {show(value)} contains a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise LimitError(f"{what} {show(value)} contains a lone surrogate"
                         f" (U+{ord(value[e.start]):04X}) at position {e.start}") from None
    return value


def check_ascii(value: str, what: str) -> str:
    """Table lines and target messages are ASCII (``²`` or ``٨`` are not digits here)."""
    if not value.isascii():
        pos = next(i for i, c in enumerate(value) if not c.isascii())
        raise LimitError(f"{what}: non-ASCII character {value[pos]!r} at position {pos};"
                         " tables and messages are ASCII")
    return value


def parse_u63(text: str, what: str) -> int:
    """A decimal number of ASCII digits that fits in 63 bits; LimitError otherwise."""
    if not text or not set(text) <= _ASCII_DIGITS:
        raise LimitError(f"invalid {what}: {show(text)} is not a non-negative integer"
                         " (ASCII digits)")
    if len(text.lstrip("0")) > MAX_DIGITS or int(text) > MAX_U63:
        raise LimitError(f"invalid {what}: {show(text)} does not fit in 63 bits")
    return int(text)


def check_u63(value: int, what: str) -> int:
    """An already-computed size or sector count (a product, a sum) within 63 bits."""
    if not 0 <= value <= MAX_U63:
        raise LimitError(f"{what} {show(value)} does not fit in 63 bits")
    return value


def check_words(words: list[str], what: str) -> list[str]:
    """The words of a table line or message, none longer than :data:`MAX_WORD`."""
    for i, word in enumerate(words, start=1):
        if len(word) > MAX_WORD:
            raise LimitError(f"{what}: word {i} ({show(word)}) is {len(word)} characters"
                             f" long, the limit is {MAX_WORD}")
    return words
