"""Openers of the built-in URI schemes (each a few lines; the devices live elsewhere)."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

from ..blockio import BlockDevice
from ..errors import DeviceError
from .file import FileDevice
from .nbd import open_nbd
from .uri import register_scheme


@register_scheme("file")
async def _open_file(
    name: str, uri: str, read_only: bool, loop: asyncio.AbstractEventLoop
) -> BlockDevice:
    path = urlsplit(uri).path
    if not path:
        raise DeviceError(f"bad device URI {uri!r}: file: needs a path (file:/path/disk.img)")
    return FileDevice(name, path, read_only=read_only, loop=loop)


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
