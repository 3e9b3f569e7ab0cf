"""Seed 001's test matrix ("Test results"), against multipath over paths that really die.

Four regression cases, four cases of the pushback feature, two error paths, each its
own test; the table is one multipath target (``ONE``) or two (``TWO``, for I/O that
spans both). Paths are PathDevices over one in-memory disk; ``kill`` is a dead NBD
server (ENOLINK). Every test asserts exact statuses and completion order.
"""

from __future__ import annotations

import asyncio

import pytest

from backend.blockio import Op, Status
from backend.dm import DeviceState, MappedDevice, parse_table
from backend.errors import DeviceError

from .mpath_support import (
    HoldTarget,
    Paths,
    Requests,
    async_test,
    events,
    make_md,
    mpath_line,
    mpaths,
    path_states,
    settle,
)

ONE = mpath_line(0, 200, "p0", "p1")
TWO = mpath_line(0, 100, "p0", "p1") + "\n" + mpath_line(100, 100, "p0", "p1")
NO_QUEUE = mpath_line(0, 200, "p0", "p1", features="0")


async def queued_with_dead_paths(text: str) -> tuple[MappedDevice, Paths, Requests]:
    """Both paths dead under queue_if_no_path; returns before any I/O."""
    paths = Paths("p0", "p1")
    md = make_md(text, paths)
    paths.kill()
    return md, paths, Requests()


# --- regression / compatibility -------------------------------------------------------


@async_test
async def test_seed001_regression_io_succeeds_with_valid_paths() -> None:
    paths = Paths("p0", "p1")
    md = make_md(ONE, paths)
    r = Requests()
    w1 = r.submit(md, "w1", Op.WRITE, 10, 4, b"a")
    w2 = r.submit(md, "w2", Op.WRITE, 20, 4, b"b")
    rd = r.submit(md, "r", Op.READ, 10, 4)
    assert r.order == [("w1", Status.OK), ("w2", Status.OK), ("r", Status.OK)]
    assert (w1.status, w2.status) == (Status.OK, Status.OK)
    assert rd.data() == b"a" * 2048
    # round-robin: the writes went one to each path
    assert (paths["p0"].sectors_written, paths["p1"].sectors_written) == ([10], [20])
    assert path_states(mpaths(md)[0]) == {"p0": "A", "p1": "A"}


@async_test
async def test_seed001_regression_io_fails_without_paths_and_queue_if_no_path_off() -> None:
    md, paths, r = await queued_with_dead_paths(NO_QUEUE)
    seen = events(md)
    w = r.submit(md, "w", Op.WRITE, 10, 4, b"x")
    await settle()
    # failed on p0 (ENOLINK), retried on p1, failed there: no path left -> EIO
    assert r.order == [("w", Status.EIO)]
    assert [op for op, _ in paths["p0"].log + paths["p1"].log] == [Op.WRITE, Op.WRITE]
    assert path_states(mpaths(md)[0]) == {"p0": "F", "p1": "F"}
    assert seen == ["path failed: p0 (1 valid)", "path failed: p1 (0 valid)"]
    assert md.event_nr == 2
    later = r.submit(md, "later", Op.READ, 0, 1)  # no path at map time: killed at once
    assert later.status is Status.EIO
    assert w.status is Status.EIO


@async_test
async def test_seed001_regression_io_queued_with_queue_if_no_path() -> None:
    md, _, r = await queued_with_dead_paths(ONE)
    w = r.submit(md, "w", Op.WRITE, 10, 4, b"x")
    rd = r.submit(md, "r", Op.READ, 50, 1)
    await settle()
    assert not w.done and not rd.done
    target = mpaths(md)[0]
    assert target.queued == 2
    assert md.info().in_flight == 2
    assert "p0 F 1 p1 F 1" in md.status()


@async_test
async def test_seed001_regression_queued_io_fails_on_flush_suspend() -> None:
    md, _, r = await queued_with_dead_paths(ONE)
    w1 = r.submit(md, "w1", Op.WRITE, 10, 4, b"x")
    w2 = r.submit(md, "w2", Op.WRITE, 150, 4, b"y")
    await settle()
    assert not w1.done and not w2.done
    await md.suspend()
    assert r.order == [("w1", Status.EIO), ("w2", Status.EIO)]
    assert md.state is DeviceState.SUSPENDED
    assert md.info().deferred == 0
    await md.resume()
    assert mpaths(md)[0].queue_if_no_path  # restored at resume


@async_test
async def test_seed001_regression_queued_io_fails_on_flush_suspend_spanning_two_targets() -> None:
    md, _, r = await queued_with_dead_paths(TWO)
    inside = r.submit(md, "inside", Op.WRITE, 10, 4, b"x")
    spanning = r.submit(md, "spanning", Op.WRITE, 98, 4, b"y")
    await settle()
    assert [t.queued for t in mpaths(md)] == [2, 1]
    await md.suspend()
    assert r.order == [("inside", Status.EIO), ("spanning", Status.EIO)]
    assert (inside.status, spanning.status) == (Status.EIO, Status.EIO)


# --- the pushback feature ---------------------------------------------------------------


@async_test
async def test_seed001_pushback_noflush_suspend_holds_queued_io() -> None:
    md, _, r = await queued_with_dead_paths(TWO)
    inside = r.submit(md, "inside", Op.WRITE, 10, 4, b"x")
    spanning = r.submit(md, "spanning", Op.WRITE, 98, 4, b"y")
    await settle()
    await md.suspend(noflush=True)
    # flushed out of the targets, but not returned: parked in the core
    assert not inside.done and not spanning.done
    assert r.order == []
    assert [t.queued for t in mpaths(md)] == [0, 0]
    info = md.info()
    assert (info.state, info.noflush_suspending, info.in_flight, info.deferred) == (
        DeviceState.SUSPENDED, False, 0, 3)  # the spanning write is two pieces


@async_test
async def test_seed001_pushback_requeued_again_at_resume_without_path_recovery() -> None:
    md, paths, r = await queued_with_dead_paths(TWO)
    inside = r.submit(md, "inside", Op.WRITE, 10, 4, b"x")
    spanning = r.submit(md, "spanning", Op.WRITE, 98, 4, b"y")
    await settle()
    await md.suspend(noflush=True)
    await md.resume()
    await settle()
    assert not inside.done and not spanning.done
    assert [t.queued for t in mpaths(md)] == [2, 1]  # queued in the targets again
    assert md.info().deferred == 0
    # and they are still good: a path comes back, the queue is kicked
    paths["p1"].restart()
    await paths["p1"].connect()
    md.message(0, ["reinstate_path", "p1"])
    md.message(100, ["reinstate_path", "p1"])
    await settle()
    assert r.order == [("inside", Status.OK), ("spanning", Status.OK)]


@pytest.mark.parametrize("recovery", ["path_recovery", "table_load"])
@async_test
async def test_seed001_pushback_succeeds_at_resume_after_path_recovery_or_table_load(
    recovery: str,
) -> None:
    md, paths, r = await queued_with_dead_paths(ONE)
    w1 = r.submit(md, "w1", Op.WRITE, 10, 4, b"1")
    w2 = r.submit(md, "w2", Op.WRITE, 20, 4, b"2")
    await settle()
    await md.suspend(noflush=True)
    w3 = r.submit(md, "w3", Op.WRITE, 30, 4, b"3")  # arrives while suspended: deferred
    if recovery == "path_recovery":
        paths["p0"].restart()
        await paths["p0"].connect()
        await md.resume()
        await settle()
        assert r.order == []  # p0 is back, but still failed in the target
        md.message(0, ["reinstate_path", "p0"])
    else:
        paths.add("p2")
        md.load(parse_table(mpath_line(0, 200, "p2"), paths))
        await md.resume()
    await settle()
    assert r.order == [("w1", Status.OK), ("w2", Status.OK), ("w3", Status.OK)]
    assert paths.disk.read(10 * 512, 2048) == b"1" * 2048
    assert paths.disk.read(30 * 512, 2048) == b"3" * 2048
    assert (w1.status, w2.status, w3.status) == (Status.OK,) * 3


@async_test
async def test_seed001_pushback_succeeds_after_table_load_spanning_two_targets() -> None:
    md, paths, r = await queued_with_dead_paths(TWO)
    inside = r.submit(md, "inside", Op.WRITE, 10, 4, b"x")
    spanning = r.submit(md, "spanning", Op.WRITE, 98, 4, b"y")
    await settle()
    await md.suspend(noflush=True)
    paths.add("p2")
    md.load(parse_table(mpath_line(0, 100, "p2") + "\n" + mpath_line(100, 100, "p2"), paths))
    await md.resume()
    await settle()
    assert r.order == [("inside", Status.OK), ("spanning", Status.OK)]
    assert (inside.status, spanning.status) == (Status.OK, Status.OK)
    assert paths.disk.read(98 * 512, 2048) == b"y" * 2048
    assert sorted(paths["p2"].sectors_written) == [10, 98, 100]


# --- error paths ------------------------------------------------------------------------

MIXED = mpath_line(0, 100, "p0", "p1") + "\n100 100 test-hold disk 100"


def mixed(paths: Paths) -> tuple[MappedDevice, HoldTarget]:
    """multipath on 0..99, a controllable test-hold target on 100..199."""

    def resolve(name: str) -> object:
        return paths.disk if name == "disk" else paths(name)

    md = MappedDevice("mp")
    md.create(parse_table(MIXED, resolve))  # type: ignore[arg-type]
    assert md.live_table is not None
    hold = md.live_table.targets[1]
    assert isinstance(hold, HoldTarget)
    return md, hold


@async_test
async def test_seed001_error_suspend_failure_flushes_pushback() -> None:
    paths = Paths("p0", "p1")
    md, hold = mixed(paths)
    paths.kill()
    r = Requests()
    queued = r.submit(md, "queued", Op.WRITE, 10, 4, b"q")
    await settle()
    assert mpaths(md)[0].queued == 1
    hold.presuspend_error = DeviceError("presuspend failed")  # after multipath's presuspend
    with pytest.raises(DeviceError):
        await md.suspend(noflush=True)
    info = md.info()
    assert (info.state, info.noflush_suspending, info.block_io) == (
        DeviceState.ACTIVE, False, False)
    await settle()
    # Pushed back, flushed to the deferred list, reissued: queued in multipath again.
    assert not queued.done
    assert mpaths(md)[0].queued == 1
    assert mpaths(md)[0].queue_if_no_path  # presuspend undone
    paths["p0"].restart()
    await paths["p0"].connect()
    md.message(0, ["reinstate_path", "p0"])
    await settle()
    assert r.order == [("queued", Status.OK)]


@async_test
async def test_seed001_error_interrupted_noflush_suspend() -> None:
    """Pushed-back I/O is reissued as the interrupted suspend unblocks the device; an I/O
    whose REQUEUE comes back after the interruption gets EIO.

    The late REQUEUE comes from test-hold: multipath itself never answers REQUEUE after
    an interrupted suspend, because presuspend_undo restores queue_if_no_path (as the
    kernel's multipath_resume does), so its late I/O queues in the target instead."""
    paths = Paths("p0", "p1")
    md, hold = mixed(paths)
    paths.kill()
    r = Requests()
    pushed = r.submit(md, "pushed", Op.WRITE, 10, 4, b"p")
    hold.hold = True
    late = r.submit(md, "late", Op.WRITE, 110, 4, b"l")  # in flight on test-hold
    await settle()
    task = asyncio.create_task(md.suspend(noflush=True))
    await settle()
    assert md.info().deferred == 1  # "pushed" is on the pushback list
    assert not task.done()  # waiting for "late"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert md.state is DeviceState.ACTIVE
    await settle()
    assert mpaths(md)[0].queued == 1  # reissued: queued in multipath again, not failed
    hold.release(Status.REQUEUE)  # "late" was not returned in time: EIO
    assert r.order == [("late", Status.EIO)]
    paths["p1"].restart()
    await paths["p1"].connect()
    md.message(0, ["reinstate_path", "p1"])
    await settle()
    assert r.order == [("late", Status.EIO), ("pushed", Status.OK)]
    assert (pushed.status, late.status) == (Status.OK, Status.EIO)
