"""``vudm serve``: build the daemon, apply the config, serve QMP until told to stop.

The ready line is printed (and flushed) only once the config has been applied and the
QMP socket listens, so a supervisor or a test can wait for it instead of polling.
SIGTERM, SIGINT and the ``quit`` command all end in the same orderly shutdown: stop
accepting clients, close exports, then mapped devices, then devices.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from ..checker import PathChecker
from ..daemon import Daemon
from .commands import Dispatcher
from .config import Config, apply_config
from .qmp import QMPServer
from .version import VERSION, version_triple

log = logging.getLogger(__name__)

READY = "vudm: ready"
"""The first words of the ready line: ``vudm: ready, QMP on <path> (pid <n>)``."""


def ready_line(qmp_path: Path) -> str:
    return f"{READY}, QMP on {qmp_path} (pid {os.getpid()})"


class VudmServer:
    """A daemon and its monitor, in this process: ``async with`` starts and stops it."""

    def __init__(self, qmp_path: str | os.PathLike[str], config: Config | None = None,
                 *, checker_interval: float = 1.0) -> None:
        self.qmp_path = Path(qmp_path)
        self.config = config
        self.daemon = Daemon()
        # Path events reach QMP through the multipath target's table events (the daemon
        # maps their reasons), so the checker itself emits nothing: one source, no dups.
        self.checker = (PathChecker(lambda: [e.md for e in self.daemon.mapped.values()],
                                    interval=checker_interval)
                        if checker_interval > 0 else None)
        self.dispatcher = Dispatcher(self.daemon)
        self.monitor = QMPServer(self.dispatcher, version=version_triple(),
                                 package=f"vudm {VERSION}")
        self.daemon.events.subscribe(self.monitor.emit)

    async def start(self) -> None:
        """Apply the config, then listen; on failure everything built so far is closed."""
        try:
            if self.config is not None:
                await apply_config(self.config, self.dispatcher)
            await self.monitor.start(self.qmp_path)
            if self.checker is not None:
                self.checker.start()
        except BaseException:
            await self.stop()
            raise

    async def wait_for_quit(self) -> None:
        await self.daemon.quit_requested.wait()

    async def stop(self) -> None:
        if self.checker is not None:
            await self.checker.stop()
        await self.monitor.stop()
        await self.daemon.close()

    async def __aenter__(self) -> VudmServer:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.stop()


async def serve(qmp_path: str | os.PathLike[str], config: Config | None = None,
                ready: Callable[[str], None] | None = None, *,
                checker_interval: float = 1.0) -> None:
    """Run a daemon until ``quit``, SIGTERM or SIGINT; ``ready`` gets the ready line."""
    loop = asyncio.get_running_loop()
    server = VudmServer(qmp_path, config, checker_interval=checker_interval)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, _on_signal, server.daemon, sig)
    try:
        async with server:
            line = ready_line(server.qmp_path)
            log.info("%s", line)
            (ready or _print_ready)(line)
            await server.wait_for_quit()
            log.info("shutting down")
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    log.info("stopped")


def _on_signal(daemon: Daemon, sig: signal.Signals) -> None:
    log.info("got %s", sig.name)
    daemon.quit_requested.set()


def _print_ready(line: str) -> None:
    print(line, flush=True)
