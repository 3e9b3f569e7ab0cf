"""Listening sockets handed to ``vudm serve`` by whoever started it: an fd number on the
command line (``addr.type=fd,addr.str=N`` as QEMU's qtest passes it, ``--qmp fd:N``), or
systemd socket activation (``LISTEN_FDS``/``LISTEN_FDNAMES``, fds from 3).

A starter that opened the socket itself can connect its front-end at once: the
connection waits in the socket's backlog until the daemon accepts it, so nothing races
the daemon's start-up. Only a listening unix stream socket is taken; anything else is
refused with what it is.
"""

from __future__ import annotations

import os
import socket
from collections.abc import MutableMapping

from backend.errors import ConfigError

SD_LISTEN_FDS_START = 3


def adopt(fd: int, what: str) -> socket.socket:
    """The listening unix stream socket at ``fd`` (close-on-exec from now on)."""
    try:
        sock = socket.socket(fileno=fd)
    except OSError as e:
        raise ConfigError(f"{what}: fd {fd} is not an open socket ({e.strerror})") from None
    if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
        sock.detach()
        raise ConfigError(f"{what}: fd {fd} is not a unix stream socket")
    if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
        sock.detach()
        raise ConfigError(f"{what}: fd {fd} is a socket that is not listening")
    os.set_inheritable(fd, False)
    sock.setblocking(False)
    return sock


def systemd_fds(environ: MutableMapping[str, str] | None = None) -> dict[str, int]:
    """Socket-activation fds meant for this process: name -> fd (unnamed ones are
    ``fdN``, and every fd is also reachable by its number). The variables are removed
    so children do not take them for theirs."""
    env = os.environ if environ is None else environ
    pid, count = env.pop("LISTEN_PID", ""), env.pop("LISTEN_FDS", "")
    names = env.pop("LISTEN_FDNAMES", "")
    if not pid or not count or pid != str(os.getpid()) or not count.isdigit():
        return {}
    fds = range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + int(count))
    given = names.split(":") if names else []
    named: dict[str, int] = {}
    for i, fd in enumerate(fds):
        name = given[i] if i < len(given) and given[i] else f"fd{fd}"
        named.setdefault(name, fd)
    return named
