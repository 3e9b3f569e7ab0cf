"""NBD URIs: where the export is and how long a request may stay unanswered."""

from __future__ import annotations

import re

import pytest

from backend.devices.nbd import DEFAULT_TIMEOUT, NbdAddress
from backend.errors import DeviceError


def test_tcp_and_unix_uris_with_and_without_a_timeout() -> None:
    a = NbdAddress.from_uri("nbd://10.77.1.2:10809/disk?timeout=2.5")
    assert (a.host, a.port, a.export, a.timeout) == ("10.77.1.2", 10809, "disk", 2.5)
    assert NbdAddress.from_uri("nbd://h/disk").timeout == DEFAULT_TIMEOUT
    u = NbdAddress.from_uri("nbd+unix:///disk?socket=/run/p.sock&timeout=0")
    assert (u.unix_path, u.timeout) == ("/run/p.sock", 0)


@pytest.mark.parametrize(("uri", "what"), [
    ("nbd://h/disk?timeout=soon", "timeout='soon'"),
    ("nbd://h/disk?timeout=-1", "timeout='-1'"),
    ("nbd://h/disk?timeout=nan", "timeout='nan'"),
    ("nbd://h/disk?timeout=1e9", "timeout='1e9'"),
    ("nbd://h/disk?tmeout=1", "unknown argument(s) tmeout"),
    ("nbd+unix:///disk?socket=/s&x=1", "unknown argument(s) x"),
])
def test_bad_arguments_are_named(uri: str, what: str) -> None:
    with pytest.raises(DeviceError, match=f"{re.escape(repr(uri))}.*{re.escape(what)}"):
        NbdAddress.from_uri(uri)
