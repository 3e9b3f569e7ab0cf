"""The daemon's event loop choice: asyncio's or uvloop's, one loop either way."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from backend import eventloop
from backend.errors import ConfigError


def test_the_default_is_uvloop_and_the_environment_overrides_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(eventloop.ENV, raising=False)
    assert eventloop.chosen() == "uvloop"  # a project dependency: always installed
    monkeypatch.setenv(eventloop.ENV, "asyncio")
    assert eventloop.chosen() == "asyncio"
    assert eventloop.chosen("uvloop") == "uvloop"  # the option wins over the environment


def test_an_unknown_loop_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(eventloop.ENV, "tokio")
    with pytest.raises(ConfigError, match="'tokio'"):
        eventloop.chosen()


async def _what_the_daemon_uses() -> str:
    """An fd watched with add_reader (libvhost-user's kicks, AIO's eventfd), a signal
    handler (SIGTERM's drain) and a call_at timer, all answered on this loop."""
    loop = asyncio.get_running_loop()
    efd = os.eventfd(0, os.EFD_NONBLOCK)
    read: asyncio.Future[int] = loop.create_future()
    signalled: asyncio.Future[bool] = loop.create_future()
    timed: asyncio.Future[bool] = loop.create_future()
    try:
        loop.add_reader(efd, lambda: read.set_result(os.eventfd_read(efd)))
        loop.add_signal_handler(signal.SIGUSR2, signalled.set_result, True)
        loop.call_at(loop.time() + 0.001, timed.set_result, True)
        os.eventfd_write(efd, 3)
        os.kill(os.getpid(), signal.SIGUSR2)
        assert await asyncio.wait_for(read, 10) == 3
        assert await asyncio.wait_for(signalled, 10)
        assert await asyncio.wait_for(timed, 10)
    finally:
        loop.remove_reader(efd)
        loop.remove_signal_handler(signal.SIGUSR2)
        os.close(efd)
    return type(loop).__module__


@pytest.mark.parametrize("name", eventloop.LOOPS)
def test_the_chosen_loop_runs_the_daemon_s_watches(name: str) -> None:
    module = eventloop.run(_what_the_daemon_uses(), name)
    assert module.startswith(name)
