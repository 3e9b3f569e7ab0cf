"""Claiming a unix socket path: refuse a live socket, remove a stale one.

The QMP monitor and every vhost-user export bind unix sockets whose files outlive a
killed process; a restarted daemon must reuse such a stale path but never steal one a
live server listens on. One claimer for both, so they agree on what "live" means.
"""

from __future__ import annotations

import errno
import os
import socket
import stat
from pathlib import Path


def claim_socket_path(path: Path, who: str = "server") -> None:
    """Make ``path`` free for a new socket, or raise FileExistsError (something that is
    not a socket is there, or another ``who`` listens there) or OSError (the probe
    failed in a way that cannot tell)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise FileExistsError(f"{path} exists and is not a socket")
    # Non-blocking: a listener whose backlog is full (it never accepts) would keep a
    # blocking connect() waiting, and the whole daemon with it. EAGAIN means someone
    # listens there just as surely as an accepted connection does.
    probe = socket.socket(socket.AF_UNIX,
                          socket.SOCK_STREAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK)
    try:
        probe.connect(str(path))
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EINPROGRESS):
            raise FileExistsError(f"{path} is in use: another {who} is listening on it"
                                  " (and not accepting)") from None
        if exc.errno not in (errno.ECONNREFUSED, errno.ENOENT):
            raise OSError(exc.errno, f"{path}: cannot tell whether it is in use: {exc}"
                          ) from exc
    else:
        raise FileExistsError(f"{path} is in use: another {who} is listening on it")
    finally:
        probe.close()
    # A stale socket left by a killed server (a backend restart): reuse the path.
    path.unlink(missing_ok=True)
