"""``vudm serve``: build the daemon, apply the config, serve QMP until told to stop.

The ready line is printed (and flushed) only once the config (or the saved state) has
been applied and the QMP socket listens, so a supervisor or a test can wait for it
instead of polling. With a state directory, the state saved there wins over the config
and every state-changing command is saved before its reply (``persist``).

SIGTERM, SIGINT and the ``quit`` command all end in the same orderly shutdown: drain
(nothing new is popped from the guests' rings, what is in flight completes; the monitor
still answers, and a second signal or ``quit`` says what the drain waits for), then
stop accepting clients, close exports, then mapped devices, then devices. The state
directory is left as it is: a restarted daemon picks up where this one stopped, and
guests attached with ``reconnect=1`` get their unfinished requests resubmitted.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from .. import eventloop
from ..checker import PathChecker
from ..daemon import Daemon
from ..daemon_state import restore
from ..journal import StateJournal
from .client import READY
from .commands import Dispatcher
from .config import Config, apply_config
from .persist import JournaledDispatcher, Persister
from .qmp import QMPServer
from .qsd_args import QsdSetup, apply_qsd
from .version import VERSION, version_triple

log = logging.getLogger(__name__)

def ready_line(qmp_path: Path | None) -> str:
    where = f"QMP on {qmp_path}" if qmp_path is not None else "no QMP"
    return f"{READY}, {where} (pid {os.getpid()})"


@dataclass
class Listeners:
    """Listening sockets the daemon was started with: for exports (by fd number, taken
    by ``fd:N`` sockets) and for QMP."""

    exports: dict[int, socket.socket] = field(default_factory=dict)
    qmp: socket.socket | None = None


class VudmServer:
    """A daemon and its monitor, in this process: ``async with`` starts and stops it."""

    def __init__(self, qmp_path: str | os.PathLike[str] | None,
                 config: Config | None = None,
                 *, checker_interval: float = 1.0,
                 state_dir: str | os.PathLike[str] | None = None,
                 drain_timeout: float = 30.0, qsd: QsdSetup | None = None,
                 listeners: Listeners | None = None) -> None:
        self.qmp_path = Path(qmp_path) if qmp_path is not None else None
        self.config = config
        self.qsd = qsd
        self.listeners = listeners or Listeners()
        self.daemon = Daemon()
        self.daemon.listeners.update(self.listeners.exports)
        self.drain_timeout = drain_timeout
        if state_dir is None and config is not None and config.state_dir is not None:
            state_dir = config.state_dir
        self.journal = StateJournal(state_dir) if state_dir is not None else None
        self.persister = (Persister(self.daemon, self.journal)
                          if self.journal is not None else None)
        # Path events reach QMP through the multipath target's table events (the daemon
        # maps their kinds), so the checker itself emits nothing: one source, no dups.
        self.checker = (PathChecker(lambda: [e.md for e in self.daemon.mapped.values()],
                                    interval=checker_interval)
                        if checker_interval > 0 else None)
        self.dispatcher = (JournaledDispatcher(self.daemon, self.persister)
                           if self.persister is not None else Dispatcher(self.daemon))
        self.monitor = QMPServer(self.dispatcher, version=version_triple(),
                                 package=f"vudm {VERSION}")
        self.daemon.events.subscribe(self.monitor.emit)

    async def start(self) -> None:
        """Apply the config, then listen; on failure everything built so far is closed."""
        try:
            state = None
            if self.journal is not None:
                self.journal.open()
                state = self.journal.read()
            if state is not None:
                assert self.journal is not None
                log.info("restoring the state saved in %s%s", self.journal.directory,
                         " (it wins over the config)" if self.config is not None else "")
                await restore(self.daemon, state)
            elif self.config is not None:
                await apply_config(self.config, self.dispatcher)
            if self.qsd is not None and state is None:
                await apply_qsd(self.qsd, self.dispatcher)
            if self.persister is not None:
                await self.persister.save()
            if self.qmp_path is not None:
                await self.monitor.start(self.qmp_path, self.listeners.qmp)
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
        await self.daemon.drain(self.drain_timeout)
        await self.monitor.stop()
        await self.daemon.close()
        for sock in self.daemon.listeners.values():  # handed over but never exported
            sock.close()
        self.daemon.listeners.clear()

    async def __aenter__(self) -> VudmServer:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.stop()


async def serve(qmp_path: str | os.PathLike[str] | None, config: Config | None = None,
                ready: Callable[[str], None] | None = None, *,
                checker_interval: float = 1.0,
                state_dir: str | os.PathLike[str] | None = None,
                qsd: QsdSetup | None = None, listeners: Listeners | None = None) -> None:
    """Run a daemon until ``quit``, SIGTERM or SIGINT; ``ready`` gets the ready line."""
    loop = asyncio.get_running_loop()
    server = VudmServer(qmp_path, config, checker_interval=checker_interval,
                        state_dir=state_dir, qsd=qsd, listeners=listeners)
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


def run(qmp_path: str | os.PathLike[str] | None, config: Config | None = None, *,
        loop: str | None = None, checker_interval: float = 1.0,
        state_dir: str | os.PathLike[str] | None = None,
        qsd: QsdSetup | None = None, listeners: Listeners | None = None) -> None:
    """``serve`` on the chosen event loop (``backend.eventloop``): what ``vudm serve`` runs."""
    eventloop.run(serve(qmp_path, config, checker_interval=checker_interval,
                        state_dir=state_dir, qsd=qsd, listeners=listeners), loop)


def _on_signal(daemon: Daemon, sig: signal.Signals) -> None:
    if daemon.quit_requested.is_set():
        log.warning("got %s again: %s", sig.name, daemon.shutdown_status())
        return
    log.info("got %s: draining, then stopping", sig.name)
    daemon.quit_requested.set()


def _print_ready(line: str) -> None:
    print(line, flush=True)
