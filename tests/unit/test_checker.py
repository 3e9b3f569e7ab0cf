"""The path checker against multipath over in-memory paths that die and come back."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import pytest
from targets.mpath_support import (
    Paths,
    Requests,
    async_test,
    make_md,
    mpath_line,
    mpaths,
    path_states,
    settle,
)

from backend.blockio import Op, Status
from backend.checker import CheckAction, PathChecker
from backend.dm import (
    Clone,
    MappedDevice,
    MapResult,
    StatusType,
    Target,
    parse_table,
    register,
    registered,
)
from backend.dm.paths import PathReport


class Emitted:
    """Records emit(event, data) calls and lets a test wait for one."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, object]]] = []
        self.changed = asyncio.Event()

    def __call__(self, name: str, data: Mapping[str, object]) -> None:
        self.events.append((name, dict(data)))
        self.changed.set()

    async def wait_for(self, count: int, timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            while len(self.events) < count:
                self.changed.clear()
                await self.changed.wait()


def setup(features: str = "1 queue_if_no_path") -> tuple[MappedDevice, Paths, Emitted,
                                                         PathChecker]:
    paths = Paths("p0", "p1")
    md = make_md(mpath_line(0, 200, "p0", "p1", features=features), paths)
    emitted = Emitted()
    checker = PathChecker(lambda: [md], emitted, interval=0.01, timeout=0.2)
    return md, paths, emitted, checker


@async_test
async def test_fails_dead_path_and_reinstates_it_when_it_answers() -> None:
    md, paths, emitted, checker = setup()
    assert await checker.check_once() == []
    paths.kill("p0")
    assert await checker.check_once() == [CheckAction("mp", "p0", "fail_path")]
    assert path_states(mpaths(md)[0]) == {"p0": "F", "p1": "A"}
    assert md.event_nr == 1
    assert await checker.check_once() == []  # still dead: tried to reconnect, no change
    assert paths["p0"].connects == 2
    paths["p0"].restart()
    assert await checker.check_once() == [CheckAction("mp", "p0", "reinstate_path")]
    assert paths["p0"].connected
    assert md.event_nr == 2
    assert emitted.events == [("PATH_FAILED", {"name": "mp", "dev": "p0"}),
                              ("PATH_REINSTATED", {"name": "mp", "dev": "p0"})]


@async_test
async def test_reinstatement_releases_queued_io() -> None:
    md, paths, _, checker = setup()
    paths.kill()
    r = Requests()
    w = r.submit(md, "w", Op.WRITE, 3, 1, b"w")
    await settle()
    assert not w.done
    assert await checker.check_once() == []  # the I/O already failed both paths
    paths["p1"].restart()
    assert await checker.check_once() == [CheckAction("mp", "p1", "reinstate_path")]
    await settle()
    assert r.order == [("w", Status.OK)]


@async_test
async def test_a_path_that_hangs_is_failed_after_the_timeout() -> None:
    _, paths, emitted, checker = setup()
    paths["p1"].hold = True
    assert await checker.check_once() == [CheckAction("mp", "p1", "fail_path")]
    paths["p1"].release()  # the late answer is harmless
    assert emitted.events == [("PATH_FAILED", {"name": "mp", "dev": "p1"})]


@async_test
async def test_a_path_failed_while_its_probe_ran_is_not_reinstated_by_that_probe() -> None:
    md, paths, emitted, checker = setup()
    paths["p0"].hold = True  # the probe's read waits: the path worked when it began
    round_ = asyncio.create_task(checker.check_once())
    await settle()
    assert len(paths["p0"].held) == 1
    assert mpaths(md)[0].fail_path("p0")  # then I/O fails it (its server just died)
    paths["p0"].hold = False
    paths["p0"].release(Status.OK)  # the old probe's answer arrives after the failure
    assert await round_ == []
    assert path_states(mpaths(md)[0]) == {"p0": "F", "p1": "A"}
    # a probe that begins after the failure decides
    assert await checker.check_once() == [CheckAction("mp", "p0", "reinstate_path")]
    assert [e for e, _ in emitted.events] == ["PATH_REINSTATED"]


@async_test
async def test_io_stuck_on_a_hung_path_is_retried_on_another_once_the_probe_times_out(
) -> None:
    md, paths, _, checker = setup("0")  # no queue_if_no_path: nothing may wait forever
    paths["p0"].hold = True
    paths["p1"].hold = True
    r = Requests()
    for i in range(4):
        r.submit(md, f"w{i}", Op.WRITE, i, 1, b"w")
    await settle()
    assert r.order == [] and len(paths["p0"].held) + len(paths["p1"].held) == 4
    paths["p1"].hold = False  # p1 answers again; p0 stays hung (a partitioned link)
    paths["p1"].release()
    # the dropped connection fails the held I/O with a path error: the target fails p0
    # itself (end_io) before the checker's verdict, which then has nothing left to do
    assert await checker.check_once() == []
    assert not paths["p0"].connected  # the checker dropped the hung connection
    await settle()
    assert sorted(r.order) == [(f"w{i}", Status.OK) for i in range(4)]
    assert path_states(mpaths(md)[0]) == {"p0": "F", "p1": "A"}


@async_test
async def test_a_suspended_device_is_left_alone() -> None:
    md, paths, _, checker = setup()
    await md.suspend()
    paths.kill("p0")
    assert await checker.check_once() == []
    assert paths["p0"].log == []
    await md.resume()
    assert await checker.check_once() == [CheckAction("mp", "p0", "fail_path")]


@async_test
async def test_no_path_retry_stops_queueing_after_n_checks_and_resumes_it() -> None:
    md, paths, _, checker = setup(features="2 no_path_retry 1")
    target = mpaths(md)[0]
    paths.kill()
    r = Requests()
    w = r.submit(md, "w", Op.WRITE, 3, 1, b"w")
    await settle()
    assert not w.done and target.queue_if_no_path
    assert await checker.check_once() == []  # first check without a path: keep queueing
    assert await checker.check_once() == [CheckAction("mp", "", "fail_if_no_path")]
    await settle()
    assert r.order == [("w", Status.EIO)]
    paths["p0"].restart()
    assert await checker.check_once() == [CheckAction("mp", "p0", "reinstate_path"),
                                          CheckAction("mp", "", "queue_if_no_path")]
    assert target.queue_if_no_path


@async_test
async def test_loop_runs_until_stopped() -> None:
    _, paths, emitted, checker = setup()
    checker.start()
    assert checker.running
    paths.kill("p1")
    await emitted.wait_for(1)
    paths["p1"].restart()
    await emitted.wait_for(2)
    await checker.stop()
    assert not checker.running
    assert [e for e, _ in emitted.events] == ["PATH_FAILED", "PATH_REINSTATED"]
    rounds = checker.rounds
    await settle()
    assert checker.rounds == rounds


def test_bad_interval() -> None:
    with pytest.raises(ValueError):
        PathChecker(list, interval=0)


class ReportingTarget(Target):
    """Not multipath: a target that only speaks the path-report protocol (and maps to
    its first path), to show that protocol is all the checker needs."""

    no_path_retry: int | None = None
    queue_if_no_path = False

    def ctr(self, args: list[str]) -> None:
        self.devices = {name: self.get_device(name) for name in args}
        self.active = dict.fromkeys(args, True)
        self.verdicts: list[str] = []

    def map(self, clone: Clone) -> MapResult:
        clone.remap(next(iter(self.devices.values())), clone.sector)
        return MapResult.REMAPPED

    def status(self, kind: StatusType) -> str:
        return " ".join(self.devices)

    def path_reports(self) -> list[PathReport]:
        return [PathReport(n, d, self.active[n]) for n, d in self.devices.items()]

    def fail_path(self, name: str) -> bool:
        self.verdicts.append(f"fail {name}")
        changed, self.active[name] = self.active[name], False
        return changed

    def reinstate_path(self, name: str) -> bool:
        self.verdicts.append(f"reinstate {name}")
        changed, self.active[name] = not self.active[name], True
        return changed

    def set_queue_if_no_path(self, on: bool) -> None:
        self.verdicts.append(f"queueing {on}")


if "test-path-report" not in registered():
    register("test-path-report")(ReportingTarget)


@async_test
async def test_any_target_speaking_the_path_report_protocol_is_checked() -> None:
    paths = Paths("p0", "p1")
    md = MappedDevice("rp")
    md.create(parse_table("0 200 test-path-report p0 p1", paths))
    assert md.live_table is not None
    target = md.live_table.targets[0]
    assert isinstance(target, ReportingTarget)
    emitted = Emitted()
    checker = PathChecker(lambda: [md], emitted, interval=0.01, timeout=0.2)
    paths.kill("p1")
    assert await checker.check_once() == [CheckAction("rp", "p1", "fail_path")]
    paths["p1"].restart()
    assert await checker.check_once() == [CheckAction("rp", "p1", "reinstate_path")]
    assert target.verdicts == ["fail p1", "reinstate p1"]
    assert emitted.events == [("PATH_FAILED", {"name": "rp", "dev": "p1"}),
                              ("PATH_REINSTATED", {"name": "rp", "dev": "p1"})]
