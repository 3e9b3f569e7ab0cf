"""Integration fixtures: the vudm pytest plugin (vudm_testing.pytest_plugin, loaded
through its entry point) does the work; these are the names this suite's tests use.

pytest-asyncio is not used: guests and daemons live on the worker's event loop (the
plugin's ``vudm_loop``), and a test drives it with ``guest.call(coroutine)``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from guests.image import GuestImage
from guests.machine import Guest
from vudm_testing.handles import Loop
from vudm_testing.pytest_plugin import require

T = TypeVar("T")


@pytest.fixture(name="require")
def require_fixture() -> Callable[[object, str], None]:
    """``require(condition, why)`` for test modules (they cannot import conftest)."""
    return require


@pytest.fixture(scope="session")
def guest_image(vudm_image: GuestImage) -> GuestImage:
    """The guest image, built (or found current) once per run, also under pytest-xdist."""
    return vudm_image


@dataclass
class RunningGuest:
    """A booted guest and the event loop it lives on."""

    guest: Guest
    loop: asyncio.AbstractEventLoop
    workdir: Path

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 600.0) -> T:
        """Run a coroutine on the guest's loop (bounded, so a hang fails the test)."""
        return self.loop.run_until_complete(asyncio.wait_for(coro, timeout))


@pytest.fixture
def guest_workdir(tmp_path: Path) -> Path:
    """A directory of the test's own for a guest's sockets and logs."""
    workdir = tmp_path / "guest"
    workdir.mkdir()
    return workdir


@pytest.fixture
def guest(guest_image: GuestImage, guest_workdir: Path, vudm_loop: Loop
          ) -> Iterator[RunningGuest]:
    """A guest of the test's own (fresh boot), whose agent answers; stopped after the
    test. Tests that only hotplug and run I/O can take the plugin's ``vudm_guest``,
    booted once per worker, instead."""
    machine = Guest(guest_workdir, image=guest_image)
    running = RunningGuest(machine, vudm_loop.loop, guest_workdir)
    try:
        running.call(machine.start())
        yield running
    finally:
        running.call(machine.stop(), timeout=60.0)
