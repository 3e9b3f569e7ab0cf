"""Checks of argument forms for command schemas (``Arg(..., check=name)``).

Each raises :class:`~backend.limits.LimitError` saying what is wrong; the schema adds the
command and the argument. The rules themselves live in ``backend/limits.py``.
"""

from __future__ import annotations

import os

from backend.errors import LimitError

from ..limits import check_ascii, check_name, show

SUN_PATH_MAX = 107
"""Longest unix socket path Linux binds (sockaddr_un.sun_path, less its NUL)."""
MAX_UUID = 128
MAX_SERIAL = 20
"""virtio-blk's serial (GET_ID) is 20 bytes."""


def name(value: str) -> None:
    check_name(value)


def ascii_text(value: str) -> None:
    check_ascii(value, "text")


def socket_path(value: str) -> None:
    size = len(os.fsencode(value))
    if size > SUN_PATH_MAX:
        raise LimitError(f"socket path {show(value)} is {size} bytes long; a unix socket"
                         f" path has at most {SUN_PATH_MAX}")


def _printable(value: str, what: str, limit: int) -> None:
    if len(value) > limit or not all(" " < c < "\x7f" for c in value):
        raise LimitError(f"invalid {what} {show(value)}: at most {limit} printable ASCII"
                         " characters, no spaces")


def uuid(value: str) -> None:
    _printable(value, "uuid", MAX_UUID)


def serial(value: str) -> None:
    _printable(value, "serial", MAX_SERIAL)
