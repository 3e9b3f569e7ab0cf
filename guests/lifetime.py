"""Children that die with their parent: a harness killed outright (SIGKILL, ``timeout``
on pytest, a dead xdist worker, a SIGKILLed bench) must not leave QEMU guests or ``vudm
serve`` running, holding sockets, images and CPU. (The paths' qemu-storage-daemon
servers start with ``--daemonize``, whose fork clears the setting: they are not covered.)

It lives in guests/, the layer that imports nothing, so the guests' QEMU and the
harness's daemons (vudm_testing.daemon) share one copy.
"""

from __future__ import annotations

import ctypes
import os
import signal
from collections.abc import Callable

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with_parent() -> Callable[[], None]:
    """A ``preexec_fn`` that has the kernel SIGKILL the child when its parent dies.

    The setting survives ``exec`` (also through ``ip netns exec``, which execs in place)
    but not ``fork`` (so no ``--daemonize``). The parent is the *thread* that forked:
    start children from a thread that outlives them (the event loop's, as every caller
    here does).
    """
    parent = os.getpid()
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before the fork

    def set_pdeathsig() -> None:
        if prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG)")
        if os.getppid() != parent:  # the parent died before the prctl: no signal comes
            os.kill(os.getpid(), signal.SIGKILL)

    return set_pdeathsig
