"""Device URIs: ``file:/path``, ``null:SIZE``, ``mem:SIZE``, ``nbd+unix:///exp?socket=P``,
``nbd://host:port/exp``, ``dm:NAME``.

Each scheme has one opener, registered here by name (:mod:`.schemes` registers the
built-in ones and opens a URI with ``open_uri``); a bad URI gets a DeviceError naming
what is wrong with it. This module parses and looks up only, so the schemes' modules
can use it without a circle.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from ..blockio import BlockDevice
from ..errors import DeviceError, LimitError
from ..limits import MAX_U63, check_text, parse_u63, show

Opener = Callable[[str, str, bool, asyncio.AbstractEventLoop], Awaitable[BlockDevice]]
"""(name, uri, read_only, loop) -> an open device."""

_openers: dict[str, Opener] = {}

_SIZE_RE = re.compile(r"([0-9]+)([KMGTkmgt]i?B?|B)?", re.ASCII)
_UNITS = {"": 1, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def register_scheme(scheme: str) -> Callable[[Opener], Opener]:
    """Register the opener of a URI scheme; a scheme registered twice is a bug."""

    def deco(fn: Opener) -> Opener:
        if scheme in _openers:
            raise ValueError(f"URI scheme {scheme!r} registered twice")
        _openers[scheme] = fn
        return fn

    return deco


def parse_size(text: str) -> int:
    """``4096``, ``64M``, ``1G``, ``1Gi``, ``2GiB`` -> bytes; a positive multiple of 512
    that fits in 63 bits."""
    m = _SIZE_RE.fullmatch(text.strip())
    if not m:
        raise DeviceError(f"bad size {show(text)}: expected a number with an optional"
                          " K/M/G/T")
    unit = m.group(2) or ""
    unit = unit[:1].upper() if unit[:1].upper() in "KMGT" else ""
    try:
        size = parse_u63(m.group(1), "size") * _UNITS[unit]
    except LimitError as e:
        raise DeviceError(f"bad size {show(text)}: {e}") from None
    if size > MAX_U63:
        raise DeviceError(f"bad size {show(text)}: {size} bytes does not fit in 63 bits")
    if size <= 0 or size % 512:
        raise DeviceError(f"bad size {show(text)}: must be a positive multiple of 512 bytes")
    return size


def scheme_of(uri: str) -> str:
    try:
        check_text(uri, "device URI")
        scheme = urlsplit(uri).scheme
    except (LimitError, ValueError) as e:
        raise DeviceError(f"bad device URI {show(uri)}: {e}") from None
    if not scheme:
        raise DeviceError(f"bad device URI {show(uri)}: no scheme (file:, nbd:, null:, mem:, dm:)")
    return scheme


def opener_for(uri: str) -> Opener:
    """The opener registered for ``uri``'s scheme; DeviceError naming an unknown one."""
    scheme = scheme_of(uri)
    opener = _openers.get(scheme)
    if opener is None:
        known = ", ".join(sorted(_openers))
        raise DeviceError(f"bad device URI {show(uri)}: unknown scheme {show(scheme)}"
                          f" (known: {known})")
    return opener


def check_decoded(uri: str, part: str, value: str) -> str:
    """A part of a URI after percent-decoding (``%00`` is a NUL there)."""
    try:
        return check_text(value, part)
    except LimitError as e:
        raise DeviceError(f"bad device URI {show(uri)}: {e}") from None

