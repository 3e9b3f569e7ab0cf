"""Blocking calls (open, stat, a probe) off the event loop, with a deadline.

A call that can block for as long as the kernel likes (open() of a FIFO, a stat on a
hung NFS mount, a connect() to a listener that never accepts) must not run on the loop:
every guest's I/O and every client would stop with it. :func:`run_blocking` runs it on
a thread of its own (not the loop's default executor, which a few hung calls would use
up) and gives up after ``timeout`` seconds; what a call that finishes late returns is
handed to ``discard`` (closing the descriptors it opened), so giving up leaks nothing.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import TypeVar

from ..errors import DeviceError

log = logging.getLogger(__name__)

T = TypeVar("T")

OPEN_TIMEOUT = 5.0
"""How long opening or probing a device may take before the command is refused."""


async def run_blocking(fn: Callable[[], T], what: str, *, timeout: float = OPEN_TIMEOUT,
                       discard: Callable[[T], None] | None = None) -> T:
    """``fn()`` on a thread; DeviceError naming ``what`` if it takes over ``timeout``."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()
    abandoned = False

    def drop(value: T) -> None:
        if discard is not None:
            try:
                discard(value)
            except Exception:
                log.exception("%s: discarding a late result failed", what)

    def deliver(ok: bool, value: object) -> None:  # on the loop
        if abandoned or future.done():
            if ok:
                log.info("%s: finished after it was given up on", what)
                drop(value)  # type: ignore[arg-type]
            return
        if ok:
            future.set_result(value)  # type: ignore[arg-type]
        else:
            future.set_exception(value)  # type: ignore[arg-type]

    def worker() -> None:
        try:
            outcome: tuple[bool, object] = (True, fn())
        except BaseException as e:
            outcome = (False, e)
        try:
            loop.call_soon_threadsafe(deliver, *outcome)
        except RuntimeError:  # the loop is gone
            if outcome[0]:
                drop(outcome[1])  # type: ignore[arg-type]

    threading.Thread(target=worker, name=f"blocking {what[:40]}", daemon=True).start()
    try:
        return await asyncio.wait_for(asyncio.shield(future), timeout)
    except (TimeoutError, asyncio.CancelledError) as e:
        abandoned = True
        if future.done() and not future.cancelled() and future.exception() is None:
            drop(future.result())  # it made it after all, just too late
        if isinstance(e, asyncio.CancelledError):
            raise
        raise DeviceError(f"{what}: timed out after {timeout:g}s") from None
