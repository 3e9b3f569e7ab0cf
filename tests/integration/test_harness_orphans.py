"""A harness killed outright takes its children along: ``timeout`` on pytest, a dead xdist
worker or a SIGKILLed bench must not leave ``vudm serve``, the bench's file server or a
QEMU guest running, holding sockets, images and CPU (guests.lifetime.die_with_parent).

Not covered: the paths' qemu-storage-daemon NBD servers. They start with ``--daemonize``
(readiness when the exports are up), whose fork clears the parent-death signal.

A parent process starts the daemon the way the harness does and prints its pid; the
test SIGKILLs that parent and waits on the daemon's pidfd for its exit.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from backend.images import allocate_image

ROOT = Path(__file__).resolve().parents[2]

PARENT = textwrap.dedent("""
    import asyncio, sys
    from pathlib import Path

    from guests.image import GuestImage
    from guests.machine import Guest
    from qmp_scenarios.bench_backends import TransportBackend
    from vudm_testing.daemon import DaemonProcess

    async def main(kind: str, workdir: Path) -> None:
        if kind == "vudm-serve":
            daemon = DaemonProcess(workdir / "d")
            await daemon.start()
            proc = daemon.proc
        elif kind == "guest":
            kernel, initrd, cmdline = sys.argv[3:6]
            guest = Guest(workdir / "guest",
                          image=GuestImage(Path(kernel), Path(initrd), cmdline))
            await guest.start()
            print(guest.pid, flush=True)
            await asyncio.Event().wait()  # until killed
        else:
            backend = TransportBackend(workdir, workdir / "disk.img")
            await backend.start()
            proc = backend.proc
        assert proc is not None
        print(proc.pid, flush=True)
        await asyncio.Event().wait()  # until killed

    asyncio.run(main(sys.argv[1], Path(sys.argv[2])))
""")


def _wait_readable(fd: int, timeout: float) -> bool:
    readable, _, _ = select.select([fd], [], [], timeout)
    return bool(readable)


@pytest.mark.parametrize("kind", ["vudm-serve", "serve-file", "guest"])
def test_a_sigkilled_parent_takes_its_daemon_along(kind: str, tmp_path: Path,
                                                   request: pytest.FixtureRequest) -> None:
    allocate_image(tmp_path / "disk.img", 8 << 20)
    extra: list[str] = []
    if kind == "guest":
        image = request.getfixturevalue("vudm_image")
        extra = [str(image.kernel), str(image.initrd), image.cmdline]
    parent = subprocess.Popen([sys.executable, "-c", PARENT, kind, str(tmp_path), *extra],
                              stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, cwd=ROOT)
    pidfd = -1
    try:
        assert parent.stdout is not None
        assert _wait_readable(parent.stdout.fileno(), 120.0), f"{kind} did not start"
        line = parent.stdout.readline()
        assert line.strip().isdigit(), f"{kind} did not start: {line!r}"
        pidfd = os.pidfd_open(int(line))
        assert not _wait_readable(pidfd, 0), f"{kind} exited before its parent died"
        parent.kill()
        parent.wait(30)
        assert _wait_readable(pidfd, 30.0), (
            f"{kind} (pid {int(line)}) still runs 30 s after its parent was SIGKILLed")
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(30)
        if pidfd >= 0:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            _wait_readable(pidfd, 30.0)
            os.close(pidfd)
