"""Shared fixtures for integration tests: prerequisites, the guest image, a booted guest.

pytest-asyncio is not used: a guest lives on an event loop that the ``guest`` fixture
owns, and a test drives it with ``guest.call(coroutine)``.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from filelock import FileLock

from backend.errors import GuestError
from guests.image import GuestImage, build_image
from guests.machine import Guest

T = TypeVar("T")


def require(condition: object, why: str) -> None:
    """Skip the test when a prerequisite is absent, or fail it under VUDM_REQUIRE_ALL=1."""
    if condition:
        return
    if os.environ.get("VUDM_REQUIRE_ALL", "") not in ("", "0"):
        pytest.fail(f"prerequisite missing (VUDM_REQUIRE_ALL is set): {why}", pytrace=False)
    pytest.skip(why)


@pytest.fixture(name="require")
def require_fixture() -> Callable[[object, str], None]:
    """``require(condition, why)`` for test modules (they cannot import conftest)."""
    return require


@pytest.fixture(scope="session")
def guest_image(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> GuestImage:
    """The guest image, built (or found current) once per run, also under pytest-xdist."""
    require(shutil.which("qemu-system-x86_64"), "qemu-system-x86_64 is not installed")
    basetemp = tmp_path_factory.getbasetemp()
    # Under xdist each worker has its own basetemp below one directory per run.
    shared = basetemp if worker_id == "master" else basetemp.parent
    outcome_file = shared / "guest-image.json"
    with FileLock(str(shared / "guest-image.lock")):
        if not outcome_file.exists():
            try:
                image = build_image()
                outcome = {"kernel": str(image.kernel), "initrd": str(image.initrd)}
            except GuestError as exc:
                outcome = {"error": str(exc)}
            outcome_file.write_text(json.dumps(outcome))
        outcome = json.loads(outcome_file.read_text())
    require("error" not in outcome, f"guest image unavailable: {outcome.get('error')}")
    return GuestImage(kernel=Path(outcome["kernel"]), initrd=Path(outcome["initrd"]))


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
def guest(guest_image: GuestImage, guest_workdir: Path) -> Iterator[RunningGuest]:
    """A booted guest whose agent answers; stopped after the test."""
    loop = asyncio.new_event_loop()
    machine = Guest(guest_workdir, image=guest_image)
    running = RunningGuest(machine, loop, guest_workdir)
    try:
        running.call(machine.start())
        yield running
    finally:
        try:
            running.call(machine.stop(), timeout=60.0)
        finally:
            loop.close()
