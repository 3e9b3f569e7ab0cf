"""Multipath over real NBD paths under a real guest: paths die for real and come back.

Each path is its own qemu-storage-daemon exporting the same raw image (locking off,
O_DIRECT). The daemon (``backend.daemon.Daemon``) runs in the test's process on the
guest's loop, with the path checker wired in as ``vudm serve`` should wire it; the
guest gets the multipath device over vhost-user-blk and runs fio with verification.
Failover time (server SIGKILL to the next I/O the guest sees complete) is printed and
saved as ``timings.json`` in the test's directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from backend.blockio import Bio, Status
from backend.checker import PathChecker
from backend.daemon import Daemon
from backend.dm import MappedDevice
from backend.targets.multipath import MultipathTarget
from backend.vhost.libvhost import NATIVE_DIR
from guests.fio import start_fio
from guests.fio_job import verify_job
from qmp_scenarios.nbd_server import NbdServer

if TYPE_CHECKING:
    from conftest import RunningGuest  # tests/integration/conftest.py (the guest fixture)

pytestmark = [
    pytest.mark.guest,
    pytest.mark.skipif(not (NATIVE_DIR / "libvhost-user.so").exists(),
                       reason="needs `make native`"),
]
log = logging.getLogger(__name__)
TIMEOUT = 120.0
IMAGE_SIZE = 64 << 20
SECTORS = IMAGE_SIZE // 512


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """Sockets need short paths (108 bytes): a directory of the test's own in /tmp."""
    with tempfile.TemporaryDirectory(prefix="vudm-mp-", dir="/tmp") as d:
        yield Path(d)


class Completions:
    """Watches every request the guest sends to a mapped device and when it completes;
    waiters wake on both."""

    def __init__(self, md: MappedDevice) -> None:
        self.ok: list[float] = []
        self.failed: list[tuple[float, Status]] = []
        self.outstanding: set[int] = set()
        self.ended_at: dict[int, float] = {}
        self._changed = asyncio.Event()
        self._serial = 0
        submit = md.submit_bio

        def submit_bio(bio: Bio) -> None:
            done = bio.done
            self._serial += 1
            serial = self._serial
            self.outstanding.add(serial)

            def ended(status: Status) -> None:
                now = time.monotonic()
                (self.ok.append(now) if status is Status.OK
                 else self.failed.append((now, status)))
                self.outstanding.discard(serial)
                self.ended_at[serial] = now
                self._changed.set()
                done(status)

            # a bio of its own: vhost/'s requests end through a method, not a settable slot
            submit(Bio(bio.op, bio.sector, bio.nr_sectors, bio.iovecs, ended,
                       preflush=bio.preflush, fua=bio.fua))
            self._changed.set()

        setattr(md, "submit_bio", submit_bio)  # noqa: B010 - the export looks it up per call

    async def _wait(self, condition: Callable[[], bool], timeout: float) -> None:
        """Until ``condition()`` holds, checked after each request's submission and end
        (work the device scheduled with ``call_soon`` at submission has run by then)."""
        async with asyncio.timeout(timeout):
            while not condition():
                self._changed.clear()
                await self._changed.wait()

    async def wait_count(self, n: int, timeout: float = TIMEOUT) -> None:
        """Until ``n`` requests in all have completed successfully."""
        await self._wait(lambda: len(self.ok) >= n, timeout)

    async def until(self, condition: Callable[[], bool], what: str,
                    timeout: float = TIMEOUT) -> None:
        """Until ``condition()`` holds; a timeout fails the test naming ``what``."""
        try:
            await self._wait(condition, timeout)
        except TimeoutError:
            raise AssertionError(f"not within {timeout:g}s: {what}") from None

    def first_after(self, t0: float) -> float:
        return min(t for t in self.ok if t > t0) - t0

    async def drained(self, requests: set[int], timeout: float = TIMEOUT) -> float:
        """When the last of ``requests`` (a copy of ``outstanding``) completed."""
        await self._wait(lambda: not requests & self.outstanding, timeout)
        return max((self.ended_at[r] for r in requests), default=time.monotonic())


class Events:
    """The daemon's events, recorded, with a wait for a given one."""

    def __init__(self, daemon: Daemon) -> None:
        self.seen: list[tuple[float, str, dict[str, object]]] = []
        self._changed = asyncio.Event()
        daemon.events.subscribe(self._on)

    def _on(self, name: str, data: Mapping[str, object]) -> None:
        self.seen.append((time.monotonic(), name, dict(data)))
        self._changed.set()

    async def wait(self, name: str, dev: str, timeout: float = TIMEOUT) -> float:
        """When event ``name`` about path ``dev`` was emitted (waits for it)."""
        async with asyncio.timeout(timeout):
            while True:
                for t, n, data in self.seen:
                    if n == name and data.get("dev") == dev:
                        return t
                self._changed.clear()
                await self._changed.wait()


def mpath_table(*paths: str, queue: bool = True) -> str:
    features = "1 queue_if_no_path" if queue else "0"
    devs = " ".join(f"{p} 1" for p in paths)
    return f"0 {SECTORS} multipath {features} 0 1 1 round-robin 0 {len(paths)} 1 {devs}"


@contextlib.asynccontextmanager
async def multipath_rig(workdir: Path, image: Path, names: list[str], *, queue: bool = True,
                        ) -> AsyncIterator[tuple[Daemon, dict[str, NbdServer], PathChecker]]:
    """NBD servers for ``names``, a daemon with mapped device ``mp`` over them exported
    on ``workdir/mp.sock``, and the path checker (0.5 s)."""
    servers = {n: NbdServer(workdir, n, image) for n in names}
    daemon = Daemon()
    checker = PathChecker(lambda: [e.md for e in daemon.mapped.values()], None,
                          interval=0.5, timeout=2.0)
    try:
        for name, server in servers.items():
            await server.start()
            await daemon.add_device(name, server.uri)
        await daemon.create_dm("mp", mpath_table(*names, queue=queue))
        await daemon.add_export("e0", "mp", str(workdir / "mp.sock"), serial="vudm-mp")
        checker.start()
        yield daemon, servers, checker
    finally:
        await checker.stop()
        await daemon.close()
        for server in servers.values():
            await server.stop()


def make_image(path: Path) -> Path:
    with path.open("wb") as f:
        f.truncate(IMAGE_SIZE)
    return path


def save_timings(tmp_path: Path, name: str, timings: dict[str, float]) -> None:
    (tmp_path / "timings.json").write_text(json.dumps(timings, indent=1))
    log.warning("%s timings: %s", name, timings)
    print(f"\n{name} timings (s): {json.dumps(timings)}")


def test_fio_verify_survives_path_kill_and_restart(
    guest: RunningGuest, tmp_path: Path, short_dir: Path
) -> None:
    """One path's server is SIGKILLed mid-write and later restarted: the I/O fails over
    at once, the checker reinstates the path, and the guest sees nothing."""
    g = guest.guest
    image = make_image(tmp_path / "disk.img")
    timings: dict[str, float] = {}

    async def scenario() -> None:
        async with multipath_rig(short_dir, image, ["p0", "p1"]) as (daemon, servers, _):
            md = daemon.mapped["mp"].md
            seen = Events(daemon)
            done = Completions(md)
            dev = await g.hotplug_vhost_user_blk("mp", short_dir / "mp.sock",
                                                 serial="vudm-mp")
            fio = await start_fio(g, verify_job(dev, size="48M", iodepth=16))
            await done.wait_count(1500)
            in_flight: set[int] = set()

            def snapshot(name: str, data: Mapping[str, object]) -> None:
                # at the moment the path fails: the requests that must now fail over
                if name == "PATH_FAILED" and not in_flight:
                    in_flight.update(done.outstanding)

            daemon.events.subscribe(snapshot)
            t_kill = time.monotonic()
            await servers["p0"].kill()
            t_failed = await seen.wait("PATH_FAILED", "p0")
            t_drained = await done.drained(in_flight)
            await done.wait_count(len(done.ok) + 1000)
            timings["kill_to_next_io_s"] = done.first_after(t_kill)
            timings["kill_to_all_in_flight_done_s"] = t_drained - t_kill
            timings["in_flight_at_path_failure"] = len(in_flight)
            timings["path_failed_event_s"] = t_failed - t_kill
            assert "p0 F 1 p1 A 0" in md.status()
            t_restart = time.monotonic()
            await servers["p0"].start()
            t_back = await seen.wait("PATH_REINSTATED", "p0")
            timings["reinstate_after_restart_s"] = t_back - t_restart
            assert "p0 A 1 p1 A 0" in md.status()
            result = await fio.wait(TIMEOUT * 3)
            assert result.ok, result
            assert result.verify_ok
            assert done.failed == []
            assert await g.kernel_io_errors() == []
            await g.unplug("mp")

    guest.call(scenario(), timeout=TIMEOUT * 5)
    save_timings(tmp_path, "path kill + restart", timings)


def test_without_queueing_the_guest_sees_eio_when_every_path_dies(
    guest: RunningGuest, tmp_path: Path, short_dir: Path
) -> None:
    """queue_if_no_path off and both servers killed: EIO reaches the guest, as it must."""
    g = guest.guest
    image = make_image(tmp_path / "disk.img")

    async def scenario() -> None:
        async with multipath_rig(short_dir, image, ["p0", "p1"], queue=False) as (
                daemon, servers, _):
            md = daemon.mapped["mp"].md
            done = Completions(md)
            dev = await g.hotplug_vhost_user_blk("mp", short_dir / "mp.sock",
                                                 serial="vudm-mp")
            fio = await start_fio(g, verify_job(dev, size="48M", iodepth=16))
            await done.wait_count(500)
            await servers["p0"].kill()
            await servers["p1"].kill()
            result = await fio.wait(TIMEOUT)
            assert not result.ok, "fio succeeded although every path was dead"
            assert result.exit_code != 0
            assert done.failed and {s for _, s in done.failed} == {Status.EIO}
            errors = await g.kernel_io_errors()
            assert errors, "the guest kernel logged no I/O error"
            log.warning("as expected, the guest saw EIO: fio exit %d, %d failed requests; "
                        "kernel: %s", result.exit_code, len(done.failed), errors[:2])
            print(f"\nexpected EIO in the guest: fio exit {result.exit_code}, "
                  f"{len(done.failed)} requests failed, kernel: {errors[0]}")

    guest.call(scenario(), timeout=TIMEOUT * 3)


def test_noflush_reload_onto_a_fresh_path_completes_queued_writes(
    guest: RunningGuest, tmp_path: Path, short_dir: Path
) -> None:
    """Both paths die under queue_if_no_path (writes queue); suspend --noflush, load a
    table over a third server, resume: the queued writes complete, the guest sees
    nothing (seed 002's motivating case)."""
    g = guest.guest
    image = make_image(tmp_path / "disk.img")
    timings: dict[str, float] = {}

    async def scenario() -> None:
        async with multipath_rig(short_dir, image, ["p0", "p1"]) as (daemon, servers, _):
            md = daemon.mapped["mp"].md
            seen = Events(daemon)
            done = Completions(md)
            dev = await g.hotplug_vhost_user_blk("mp", short_dir / "mp.sock",
                                                 serial="vudm-mp")
            fio = await start_fio(g, verify_job(dev, size="48M", iodepth=16))
            await done.wait_count(1500)
            await servers["p0"].kill()
            await servers["p1"].kill()
            await seen.wait("PATH_FAILED", "p0")
            await seen.wait("PATH_FAILED", "p1")
            assert md.live_table is not None
            target = md.live_table.targets[0]
            assert isinstance(target, MultipathTarget)
            # Both paths can be failed by the checker while the guest has nothing in
            # flight (a TCG guest may pause between writes): its next writes queue.
            await done.until(lambda: target.queued > 0, "a guest write queued with no path")
            stalled = len(done.ok)
            queued = set(done.outstanding)
            assert not done.failed
            fresh = NbdServer(short_dir, "p2", image)
            await fresh.start()
            try:
                await daemon.add_device("p2", fresh.uri)
                t0 = time.monotonic()
                await daemon.suspend_dm("mp", noflush=True, timeout=30)
                timings["noflush_suspend_s"] = time.monotonic() - t0
                assert md.info().deferred > 0 and not done.failed
                await daemon.load_dm("mp", mpath_table("p2"))
                t_resume = time.monotonic()
                await daemon.resume_dm("mp")
                t_drained = await done.drained(queued)
                await done.wait_count(stalled + 1000)
                timings["resume_to_next_io_s"] = done.first_after(t_resume)
                timings["resume_to_queued_done_s"] = t_drained - t_resume
                timings["queued_at_suspend"] = len(queued)
                result = await fio.wait(TIMEOUT * 3)
                assert result.ok, result
                assert result.verify_ok
                assert done.failed == []
                assert await g.kernel_io_errors() == []
                await g.unplug("mp")
            finally:
                await daemon.close()
                await fresh.stop()

    guest.call(scenario(), timeout=TIMEOUT * 5)
    save_timings(tmp_path, "noflush reload onto a fresh path", timings)
