"""Openers of the built-in URI schemes (each a few lines; the devices live elsewhere),
and :func:`open_uri`, which opens a URI through them.

``dm:NAME`` names another mapped device of the daemon (stacking). Devices sit below the
dm core, so this module cannot open one: the daemon's device registry opens ``dm:`` URIs
itself (with :func:`mapped_device_name`), and here, outside a daemon, they are refused.
"""

from __future__ import annotations

import asyncio
import os
from functools import partial
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from ..blockio import BlockDevice
from ..errors import DeviceError, LimitError
from ..limits import show
from .file import AIO_ENGINES, FileDevice, close_backing, open_backing
from .mem import MemDevice, NullDevice
from .nbd import open_nbd
from .offloop import run_blocking
from .uri import opener_for, parse_size, register_scheme


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


def mapped_device_name(uri: str) -> str:
    """The mapped device a ``dm:NAME`` URI names; DeviceError if it names none."""
    target = urlsplit(uri).path
    if not target or "/" in target:
        raise DeviceError(f"bad device URI {show(uri)}: dm: needs a mapped device name (dm:vol0)")
    return target


@register_scheme("dm")
async def _open_dm(
    name: str, uri: str, read_only: bool, loop: asyncio.AbstractEventLoop
) -> BlockDevice:
    mapped_device_name(uri)
    raise DeviceError(f"{uri}: no mapped devices to stack on here (no daemon)")


async def open_uri(
    name: str, uri: str, *, read_only: bool = False,
    loop: asyncio.AbstractEventLoop | None = None,
) -> BlockDevice:
    """Open the device a URI names; raise DeviceError naming the problem."""
    opener = opener_for(uri)
    try:
        return await opener(name, uri, read_only, loop or asyncio.get_running_loop())
    except (LimitError, ValueError) as e:
        # urlsplit's own complaints (a bad IPv6 host, a bad port) and the limits of the
        # parts a URI decodes to.
        raise DeviceError(f"bad device URI {show(uri)}: {e}") from None
