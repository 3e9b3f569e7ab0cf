"""Openers of the built-in URI schemes (each a few lines; the devices live elsewhere).

``dm:NAME`` opens another mapped device of the daemon (stacking). Devices sit below the
dm core, so this module cannot look mapped devices up itself: the daemon installs an
opener with :func:`set_mapped_device_opener` (until it does, ``dm:`` URIs are refused).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from functools import partial
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from ..blockio import BlockDevice
from ..errors import DeviceError
from ..limits import show
from .file import AIO_ENGINES, FileDevice, close_backing, open_backing
from .mem import MemDevice, NullDevice
from .nbd import open_nbd
from .offloop import run_blocking
from .uri import parse_size, register_scheme

MappedDeviceOpener = Callable[[str, bool], BlockDevice]
"""(mapped device name, read_only) -> the device as a BlockDevice, held open until its
``close()``; raises DeviceError when there is no such mapped device."""

_mapped_device_opener: MappedDeviceOpener | None = None


def mapped_device_opener() -> MappedDeviceOpener | None:
    """The installed ``dm:`` opener, if any."""
    return _mapped_device_opener


def set_mapped_device_opener(opener: MappedDeviceOpener | None) -> None:
    """Tell ``dm:NAME`` how to open mapped devices (the daemon, at start; None to unset)."""
    global _mapped_device_opener
    _mapped_device_opener = opener


@register_scheme("file")
async def _open_file(
    name: str, uri: str, read_only: bool, loop: asyncio.AbstractEventLoop
) -> BlockDevice:
    parts = urlsplit(uri)
    if not parts.path:
        raise DeviceError(f"bad device URI {show(uri)}: file: needs a path (file:/path/disk.img)")
    query = parse_qs(parts.query, keep_blank_values=True)
    aio = query.pop("aio", ["native"])[-1]
    if query or aio not in AIO_ENGINES:
        raise DeviceError(f"bad device URI {show(uri)}: file: takes only ?aio=native"
                          " or ?aio=threads")
    path = Path(parts.path)
    fds = await run_blocking(partial(open_backing, name, path, read_only=read_only),
                             f"{name}: opening {show(parts.path)}", discard=close_backing)
    try:
        return FileDevice(name, path, read_only=read_only, aio=aio, loop=loop, fds=fds)
    except BaseException:
        close_backing(fds)
        raise


@register_scheme("nbd")
async def _open_nbd_tcp(
    name: str, uri: str, read_only: bool, loop: asyncio.AbstractEventLoop
) -> BlockDevice:
    return await open_nbd(name, uri, read_only, loop)


@register_scheme("nbd+unix")
async def _open_nbd_unix(
    name: str, uri: str, read_only: bool, loop: asyncio.AbstractEventLoop
) -> BlockDevice:
    return await open_nbd(name, uri, read_only, loop)


def _size_of(uri: str, scheme: str) -> int:
    text = urlsplit(uri).path
    if not text:
        raise DeviceError(f"bad device URI {show(uri)}: {scheme}: needs a size ({scheme}:64M)")
    return parse_size(text)


@register_scheme("null")
async def _open_null(
    name: str, uri: str, read_only: bool, loop: asyncio.AbstractEventLoop
) -> BlockDevice:
    return NullDevice(name, _size_of(uri, "null"), read_only=read_only)


@register_scheme("mem")
async def _open_mem(
    name: str, uri: str, read_only: bool, loop: asyncio.AbstractEventLoop
) -> BlockDevice:
    size = _size_of(uri, "mem")
    # A mem: device lives in this process: at most half the machine's memory, so that a
    # typo (mem:1T) is refused rather than left to the allocator or the OOM killer.
    limit = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2
    if size > limit:
        raise DeviceError(f"bad device URI {show(uri)}: {size} bytes is more than half"
                          f" of this machine's memory ({limit} bytes)")
    try:
        return MemDevice(name, size, read_only=read_only)
    except MemoryError:
        raise DeviceError(f"bad device URI {show(uri)}: cannot allocate {size}"
                          " bytes") from None


@register_scheme("dm")
async def _open_dm(
    name: str, uri: str, read_only: bool, loop: asyncio.AbstractEventLoop
) -> BlockDevice:
    target = urlsplit(uri).path
    if not target or "/" in target:
        raise DeviceError(f"bad device URI {show(uri)}: dm: needs a mapped device name (dm:vol0)")
    if _mapped_device_opener is None:
        raise DeviceError(f"{uri}: no mapped devices to stack on here (no daemon)")
    return _mapped_device_opener(target, read_only)
