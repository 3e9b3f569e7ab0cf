"""A vudm daemon on the test's own loop: no subprocess, the daemon's objects reachable.

Tests only (tests/ is on sys.path through its conftest): it builds the daemon from its
modules, which the harness other programs use (``vudm_testing.daemon``, a ``vudm serve``
child process) must never do.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from qemu.qmp import QMPClient

from backend.control.config import Config
from backend.control.serve import VudmServer


@asynccontextmanager
async def in_process(sock_dir: Path, config: Config | None = None, *,
                     state_dir: Path | None = None, checker_interval: float = 1.0,
                     ) -> AsyncIterator[tuple[VudmServer, QMPClient]]:
    """A VudmServer on ``sock_dir/qmp.sock`` in this loop, and a client of it."""
    async with VudmServer(sock_dir / "qmp.sock", config, state_dir=state_dir,
                          checker_interval=checker_interval) as server:
        client = QMPClient("test")
        await client.connect(str(server.qmp_path))
        try:
            yield server, client
        finally:
            await client.disconnect()
