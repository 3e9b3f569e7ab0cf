"""The daemon's one event loop: asyncio's own, or uvloop's (the same asyncio API in C).

``vudm serve --loop`` and ``python -m backend.serve_file --loop`` choose; without the
option ``VUDM_LOOP`` does, and without that uvloop when it is installed. Either way the
daemon has one loop and watches libvhost-user's fds with ``add_reader``; uvloop only
runs the loop's own bookkeeping (select, ready queue, timers) in C rather than Python,
which is a measurable part of a wake-up's cost at queue depth 1 (see ``make bench``).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from backend.errors import ConfigError

LOOPS = ("asyncio", "uvloop")
ENV = "VUDM_LOOP"
_T = TypeVar("_T")


def _uvloop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def chosen(name: str | None = None) -> str:
    """The loop to run: ``name``, else ``$VUDM_LOOP``, else uvloop if installed."""
    name = name or os.environ.get(ENV) or ""
    if not name:
        return "uvloop" if _uvloop_factory() is not None else "asyncio"
    if name not in LOOPS:
        raise ConfigError(f"unknown event loop {name!r} (choose from {', '.join(LOOPS)})")
    return name


def run(main: Coroutine[Any, Any, _T], name: str | None = None) -> _T:
    """``asyncio.run(main)`` on the chosen loop; uvloop asked for but missing is a ConfigError."""
    factory = None
    if chosen(name) == "uvloop":
        factory = _uvloop_factory()
        if factory is None:
            main.close()
            raise ConfigError("event loop 'uvloop' asked for, but uvloop is not installed")
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)
