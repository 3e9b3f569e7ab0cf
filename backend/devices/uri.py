"""Device URIs: ``file:/path``, ``null:SIZE``, ``mem:SIZE``, ``nbd+unix:///exp?socket=P``,
``nbd://host:port/exp``, ``dm:NAME``.

Each scheme has one opener, registered here by name; ``open_uri`` parses and dispatches,
and a bad URI gets a DeviceError naming what is wrong with it.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from ..blockio import BlockDevice
from ..errors import DeviceError

Opener = Callable[[str, str, bool, asyncio.AbstractEventLoop], Awaitable[BlockDevice]]
"""(name, uri, read_only, loop) -> an open device."""

_openers: dict[str, Opener] = {}

_SIZE_RE = re.compile(r"^(\d+)([KMGT]i?B?|[kmgt]|B)?$")
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
    """``4096``, ``64M``, ``1G``, ``2GiB`` -> bytes; must be a multiple of 512."""
    m = _SIZE_RE.match(text.strip())
    if not m:
        raise DeviceError(f"bad size {text!r}: expected a number with an optional K/M/G/T")
    unit = (m.group(2) or "").upper().replace("IB", "").replace("B", "")
    size = int(m.group(1)) * _UNITS[unit]
    if size <= 0 or size % 512:
        raise DeviceError(f"bad size {text!r}: must be a positive multiple of 512 bytes")
    return size


def scheme_of(uri: str) -> str:
    scheme = urlsplit(uri).scheme
    if not scheme:
        raise DeviceError(f"bad device URI {uri!r}: no scheme (file:, nbd:, null:, mem:, dm:)")
    return scheme


async def open_uri(
    name: str, uri: str, *, read_only: bool = False,
    loop: asyncio.AbstractEventLoop | None = None,
) -> BlockDevice:
    """Open the device a URI names; raise DeviceError naming the problem."""
    scheme = scheme_of(uri)
    _load_builtin_schemes()
    opener = _openers.get(scheme)
    if opener is None:
        known = ", ".join(sorted(_openers))
        raise DeviceError(f"bad device URI {uri!r}: unknown scheme {scheme!r} (known: {known})")
    return await opener(name, uri, read_only, loop or asyncio.get_running_loop())


def _load_builtin_schemes() -> None:
    # Imported late so that each scheme's module registers itself once.
    from . import schemes  # noqa: F401
