"""The vudm pytest plugin (entry point ``pytest11``: installed with vudm, active in any
pytest run in that environment). Fixtures:

- ``vudm_loop`` (session): the worker's event loop; ``vudm_loop.run(coro)``.
- ``vudm_require``: ``vudm_require(cond, why)`` skips, or fails under VUDM_REQUIRE_ALL=1.
- ``vudm_image`` (session): the guest image, built once per run under a file lock shared
  by every pytest-xdist worker.
- ``vudm`` : a ``vudm serve`` process of the test's own with a QMP client
  (``vudm.qmp(cmd, args)``, ``vudm.query_dm(name)``).
- ``nbd_path``: ``nbd_path(name, image=None, size_mb=64)`` starts a real NBD server
  (qemu-storage-daemon) and registers it with ``vudm`` as device ``name``;
  ``.kill()``, ``.restart()``.
- ``vudm_mapped``: ``vudm_mapped(name, table)`` creates a mapped device, removed after.
- ``vudm_export``: ``vudm_export(export_id, dm)`` serves it over vhost-user-blk; returns
  the socket path.
- ``vudm_guest``: the worker's guest (booted once per xdist worker, lent to one test at
  a time with a cleared kernel log; whatever the test plugged is unplugged after it, and a
  guest left in a bad state is rebooted for the next test). ``.attach``, ``.sh``,
  ``.io_errors``.
- ``scenario``: ``scenario(steps, expect="no-eio")`` runs ``async def steps(rig)``
  (the qmp_scenarios steps) on a rig of its own with the worker's guest, judges it like a
  built-in scenario and returns the ScenarioResult; its JSON and timeline PNG are kept
  in the test's tmp_path.

Everything a fixture starts is stopped at its teardown; each test's sockets and logs are
in its own directories, so tests run in parallel under ``pytest -n N``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from guests.image import GuestImage
    from guests.machine import Guest
    from qmp_scenarios.evidence import Declared
    from qmp_scenarios.registry import Expect
    from qmp_scenarios.result import ScenarioResult
    from qmp_scenarios.rig import Rig

    from .handles import GuestHandle, Loop, NbdPath, Vudm

Require = Callable[[object, str], None]


def require(condition: object, why: str) -> None:
    """Skip the test when a prerequisite is absent, or fail it under VUDM_REQUIRE_ALL=1."""
    if condition:
        return
    if os.environ.get("VUDM_REQUIRE_ALL", "") not in ("", "0"):
        pytest.fail(f"prerequisite missing (VUDM_REQUIRE_ALL is set): {why}", pytrace=False)
    pytest.skip(why)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "guest: boots a real QEMU guest (slow)")


@pytest.fixture(name="vudm_require")
def vudm_require_fixture() -> Require:
    return require


@pytest.fixture(scope="session")
def vudm_loop() -> Iterator[Loop]:
    from .handles import Loop

    loop = Loop()
    yield loop
    loop.close()


@pytest.fixture(scope="session")
def vudm_image(tmp_path_factory: pytest.TempPathFactory) -> GuestImage:
    from guests.image import GuestImage, build_image

    from .once import image_once, run_dir

    require(shutil.which("qemu-system-x86_64"), "qemu-system-x86_64 is not installed")
    image = image_once(run_dir(tmp_path_factory.getbasetemp()), build_image)
    if not isinstance(image, GuestImage):
        require(False, f"guest image unavailable: {image}")
        raise AssertionError("unreachable")
    return image


@pytest.fixture
def vudm_workdir(tmp_path: Path) -> Iterator[Path]:
    """The test's run directory: short enough for unix socket paths (one made outside
    ``tmp_path`` for that is removed at teardown: pytest would not)."""
    from qmp_scenarios.rig import short_run_dir

    with short_run_dir(tmp_path / "vudm") as run:
        yield run


@pytest.fixture
def vudm(vudm_loop: Loop, vudm_workdir: Path, tmp_path: Path) -> Iterator[Vudm]:
    from qemu.qmp import QMPClient

    from vudm_testing.daemon import DaemonProcess

    from .handles import Vudm

    process = DaemonProcess(vudm_workdir / "d", log_path=tmp_path / "vudm.log",
                            extra_args=("--checker-interval", "0.5"))
    vudm_loop.run(process.start(), 60.0)
    client = QMPClient("pytest")
    try:
        vudm_loop.run(client.connect(str(process.qmp_path)), 30.0)
        yield Vudm(vudm_loop, process, client)
    finally:
        with contextlib.suppress(Exception):
            vudm_loop.run(client.disconnect(), 30.0)
        vudm_loop.run(process.stop(), 60.0)


@pytest.fixture
def nbd_path(vudm: Vudm, vudm_loop: Loop, vudm_workdir: Path, tmp_path: Path
             ) -> Iterator[Callable[..., NbdPath]]:
    from backend.images import allocate_image
    from qmp_scenarios.nbd_server import NbdServer

    from .handles import NbdPath

    require(shutil.which("qemu-storage-daemon"), "qemu-storage-daemon is not installed")
    started: list[NbdServer] = []

    def start(name: str, image: Path | None = None, size_mb: int = 64) -> NbdPath:
        if image is None:
            image = tmp_path / f"{name}.img"
            allocate_image(image, size_mb << 20)
        server = NbdServer(vudm_workdir / "paths", name, image)
        vudm_loop.run(server.start(), 60.0)
        started.append(server)
        vudm.qmp("dev-add", {"name": name, "uri": server.uri})
        return NbdPath(vudm_loop, server)

    yield start
    for server in started:
        with contextlib.suppress(Exception):
            vudm_loop.run(server.stop(), 60.0)


@pytest.fixture
def vudm_mapped(vudm: Vudm) -> Iterator[Callable[[str, str], str]]:
    created: list[str] = []

    def create(name: str, table: str) -> str:
        vudm.qmp("dm-create", {"name": name, "table": table})
        created.append(name)
        return name

    yield create
    for name in reversed(created):
        with contextlib.suppress(Exception):
            vudm.qmp("dm-remove", {"name": name, "force": True})


@pytest.fixture
def vudm_export(vudm: Vudm, vudm_workdir: Path) -> Callable[..., Path]:
    def export(export_id: str, dm: str, num_queues: int = 1, writable: bool = True) -> Path:
        sock = vudm_workdir / f"{export_id}.sock"
        vudm.qmp("export-add", {"id": export_id, "dm": dm, "socket": str(sock),
                                "num-queues": num_queues, "writable": writable})
        return sock

    return export


class WorkerGuest:
    """The guest one xdist worker boots once and lends to its tests one at a time."""

    def __init__(self, loop: Loop, image: GuestImage, workdir: Path) -> None:
        self.loop = loop
        self.image = image
        self.workdir = workdir
        self.guest: Guest | None = None
        self.boots = 0

    def lend(self) -> Guest:
        """The running guest with its kernel log cleared (booted now if need be)."""
        from guests.machine import Guest

        if self.guest is not None and not self._healthy(self.guest):
            self.retire()
        if self.guest is None:
            self.boots += 1
            guest = Guest(self.workdir / f"boot{self.boots}", image=self.image)
            self.loop.run(guest.start())
            self.guest = guest
        self.loop.run(self.guest.run("dmesg -c >/dev/null", 30), 60.0)
        return self.guest

    def take_back(self) -> None:
        """After a test: stop its fio, unplug its disks; reboot next time if that failed."""
        from qmp_scenarios.rig import hand_back

        if self.guest is None:
            return
        try:
            self.loop.run(hand_back(self.guest), 300.0)
        except Exception:
            self.retire()
            return
        if self.guest.plugged_disks():
            self.retire()

    def _healthy(self, guest: Guest) -> bool:
        try:
            return self.loop.run(guest.run("true", 20), 30.0).exit_code == 0
        except Exception:
            return False

    def retire(self) -> None:
        if self.guest is not None:
            with contextlib.suppress(Exception):
                self.loop.run(self.guest.stop(), 60.0)
            self.guest = None


@pytest.fixture(scope="session")
def vudm_worker_guest(vudm_loop: Loop, vudm_image: GuestImage,
                      tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerGuest]:
    """The worker's shared guest (not booted until a test asks for it)."""
    shared = WorkerGuest(vudm_loop, vudm_image, tmp_path_factory.mktemp("worker-guest"))
    yield shared
    shared.retire()


@pytest.fixture
def vudm_guest(vudm_worker_guest: WorkerGuest, vudm_loop: Loop) -> Iterator[GuestHandle]:
    from .handles import GuestHandle

    guest = vudm_worker_guest.lend()
    try:
        yield GuestHandle(vudm_loop, guest)
    finally:
        vudm_worker_guest.take_back()


Steps = Callable[["Rig"], Awaitable[None]]


class ScenarioRunner:
    """``scenario(steps)``: run a user's steps like a built-in scenario."""

    def __init__(self, loop: Loop, workdir: Path, test_name: str,
                 worker_guest: WorkerGuest) -> None:
        self.loop = loop
        self.workdir = workdir
        self.test_name = test_name
        self.worker_guest = worker_guest

    def __call__(self, steps: Steps, *, expect: Expect = "no-eio", name: str | None = None,
                 evidence: Declared | None = None, image_mb: int = 256,
                 shared_guest: bool = True, timeout: float = 900.0) -> ScenarioResult:
        """Run ``steps`` (``async def steps(rig)``) and return the judged result.

        ``evidence`` declares the daemon counters the steps must move, as a built-in
        scenario does (``{"mp": {"requeued": 1}}``); a shortfall fails the result as
        hollow. The counters read are in ``result.evidence`` either way. With
        ``shared_guest`` the steps' ``boot_guest`` adopts the worker's guest; pass False
        for a guest of the scenario's own. JSON and PNG go to the test's tmp_path
        (``<name>.json``, ``<name>.png``).
        """
        from qmp_scenarios.runner import run_steps

        name = name or self.test_name
        kwargs: dict[str, Any] = dict(name=name, expect=expect, image_mb=image_mb,
                                      evidence=evidence,
                                      json_path=self.workdir / f"{name}.json")
        if shared_guest:
            kwargs["guest"] = self.worker_guest.lend()
        try:
            return self.loop.run(run_steps(steps, self.workdir / name, **kwargs), timeout)
        finally:
            if shared_guest:
                self.worker_guest.take_back()


@pytest.fixture
def scenario(vudm_loop: Loop, vudm_image: GuestImage, vudm_worker_guest: WorkerGuest,
             tmp_path: Path, request: pytest.FixtureRequest) -> ScenarioRunner:
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in request.node.name)
    return ScenarioRunner(vudm_loop, tmp_path, safe.strip("-")[:60], vudm_worker_guest)
