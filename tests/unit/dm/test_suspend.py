"""Suspend and resume, flush and noflush: the seed 001 rules and its test matrix."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from backend.blockio import Op, Status
from backend.dm import DeviceState, EndIo, MappedDevice, MapResult, StatusType
from backend.errors import DeviceError, StateError

from .support import CALLS, Devices, HoldTarget, Requests, async_test, settle, table, targets

TWO = "0 100 test-hold a 0\n100 100 test-hold a 100"


def setup() -> tuple[MappedDevice, Devices, Requests, HoldTarget, HoldTarget]:
    devs = Devices(a=200)
    md = MappedDevice("m")
    md.create(table(TWO, devs))
    first, second = targets(md)
    CALLS.clear()
    return md, devs, Requests(), first, second


@async_test
async def test_io_blocks_while_suspended() -> None:
    md, _, r, _, _ = setup()
    await md.suspend()
    w = r.submit(md, "w", Op.WRITE, 10, 4, b"x")
    await settle()
    assert not w.done
    assert md.info().deferred == 1
    await md.resume()
    await settle()
    assert w.status is Status.OK


@async_test
async def test_flush_suspend_waits_for_inflight() -> None:
    md, _, r, a, _ = setup()
    a.hold = True
    w = r.submit(md, "w", Op.WRITE, 10, 4, b"x")
    task = asyncio.create_task(md.suspend())
    await settle()
    info = md.info()
    assert (info.state, info.suspending, info.block_io, info.in_flight) == (
        DeviceState.ACTIVE, True, True, 1)
    assert not task.done()
    assert CALLS == ["presuspend@0", "presuspend@100"]
    a.release()
    await task
    assert w.status is Status.OK
    assert md.state is DeviceState.SUSPENDED
    assert CALLS[2:] == ["postsuspend@0", "postsuspend@100"]


@async_test
async def test_flush_suspend_fails_held_io() -> None:
    """Seed matrix: queued I/O fails when suspend is issued without noflush, also an I/O
    spanning two targets."""
    md, _, r, a, b = setup()
    for t in (a, b):
        t.hold = t.multipath_like = True
    inside = r.submit(md, "inside", Op.WRITE, 10, 4, b"x")
    spanning = r.submit(md, "spanning", Op.WRITE, 98, 4, b"y")
    await md.suspend()
    assert inside.status is Status.EIO
    assert spanning.status is Status.EIO
    assert md.state is DeviceState.SUSPENDED


@async_test
async def test_noflush_suspend_pushes_back_held_io() -> None:
    """Seed matrix: queued I/O is flushed from the target but does not return."""
    md, _, r, a, b = setup()
    for t in (a, b):
        t.hold = t.multipath_like = True
    inside = r.submit(md, "inside", Op.WRITE, 10, 4, b"x")
    spanning = r.submit(md, "spanning", Op.WRITE, 98, 4, b"y")
    await md.suspend(noflush=True)
    assert not inside.done and not spanning.done
    assert (a.held, b.held) == ([], [])
    info = md.info()
    assert (info.state, info.noflush_suspending, info.in_flight, info.deferred) == (
        DeviceState.SUSPENDED, False, 0, 3)  # the spanning write is two pieces


@async_test
async def test_pushback_held_again_when_resumed_without_recovery() -> None:
    """Seed matrix: resumed without path recovery, the I/O is queued in the target again."""
    md, _, r, a, _ = setup()
    a.hold = a.multipath_like = True
    w = r.submit(md, "w", Op.WRITE, 10, 4, b"x")
    await md.suspend(noflush=True)
    await md.resume()
    await settle()
    assert not w.done
    assert len(a.held) == 1


@async_test
async def test_pushback_succeeds_after_recovery() -> None:
    md, devs, r, a, b = setup()
    for t in (a, b):
        t.hold = t.multipath_like = True
    w = r.submit(md, "w", Op.WRITE, 98, 4, b"z")
    await md.suspend(noflush=True)
    a.hold = b.hold = False
    await md.resume()
    await settle()
    assert w.status is Status.OK
    assert devs.mem("a").read(98 * 512, 4 * 512) == b"z" * 2048


@async_test
async def test_pushback_succeeds_after_table_load() -> None:
    """Seed matrix: queued I/O succeeds when resumed with a new table, also spanning two."""
    md, devs, r, a, b = setup()
    for t in (a, b):
        t.hold = t.multipath_like = True
    inside = r.submit(md, "inside", Op.WRITE, 10, 4, b"x")
    spanning = r.submit(md, "spanning", Op.WRITE, 98, 4, b"y")
    await md.suspend(noflush=True)
    md.load(table("0 200 linear a 0", devs))
    await md.resume()
    await settle()
    assert (inside.status, spanning.status) == (Status.OK, Status.OK)
    assert devs.mem("a").read(98 * 512, 2048) == b"y" * 2048
    assert "dtr@0" in CALLS and "dtr@100" in CALLS


@async_test
async def test_pushback_reissued_in_order_before_deferred() -> None:
    md, _, r, a, _ = setup()
    a.hold = a.multipath_like = True
    r.submit(md, "w1", Op.WRITE, 1, 1, b"1")
    r.submit(md, "w2", Op.WRITE, 2, 1, b"2")
    await md.suspend(noflush=True)
    r.submit(md, "w3", Op.WRITE, 3, 1, b"3")
    a.hold = False
    await md.resume()
    await settle()
    assert r.order == [("w1", Status.OK), ("w2", Status.OK), ("w3", Status.OK)]


@pytest.mark.parametrize("first", [Status.EIO, Status.REQUEUE])
@async_test
async def test_noflush_pushback_supersedes_error(first: Status) -> None:
    """Two copies of one discard: one fails, one asks REQUEUE; pushback wins."""
    md, _, r, a, _ = setup()
    a.hold = True
    a.num_discard_bios = 2
    d = r.submit(md, "discard", Op.DISCARD, 10, 8)
    assert len(a.held) == 2
    second = Status.REQUEUE if first is Status.EIO else Status.EIO

    def presuspend() -> None:
        c0, c1 = a.held
        a.held = []
        c0.complete(first)
        c1.complete(second)

    a.presuspend_hook = presuspend
    await md.suspend(noflush=True)
    assert not d.done
    a.hold = False
    a.presuspend_hook = None
    await md.resume()
    await settle()
    assert d.status is Status.OK


@async_test
async def test_requeue_outside_noflush_is_eio() -> None:
    md, _, r, a, b = setup()
    a.map_answer = MapResult.REQUEUE
    w1 = r.submit(md, "map-requeue", Op.WRITE, 10, 1, b"x")
    a.map_answer = None
    b.end_io_answers = [EndIo.REQUEUE]
    w2 = r.submit(md, "endio-requeue", Op.WRITE, 110, 1, b"x")
    a.hold = True
    w3 = r.submit(md, "held", Op.WRITE, 10, 1, b"x")
    task = asyncio.create_task(md.suspend())  # a flush suspend: the flag is not set
    await settle()
    a.release(Status.REQUEUE)
    await task
    assert (w1.status, w2.status, w3.status) == (Status.EIO, Status.EIO, Status.EIO)


@async_test
async def test_noflush_flag_set_for_presuspend_and_cleared_before_return() -> None:
    md, _, _, a, _ = setup()
    await md.suspend(noflush=True)
    assert a.seen_noflush_at_presuspend is True
    assert md.noflush_suspending() is False
    await md.resume()
    await md.suspend()
    assert a.seen_noflush_at_presuspend is False


def interrupted_setup() -> tuple[MappedDevice, Requests, HoldTarget, HoldTarget]:
    """A queues one write (multipath-like), B holds one plain write in flight."""
    md, _, r, a, b = setup()
    a.hold = a.multipath_like = True
    b.hold = True
    return md, r, a, b


@async_test
async def test_interrupted_suspend_reissues_pushed_back_io() -> None:
    md, r, a, b = interrupted_setup()
    queued = r.submit(md, "queued", Op.WRITE, 10, 1, b"q")
    inflight = r.submit(md, "inflight", Op.WRITE, 110, 1, b"i")
    task = asyncio.create_task(md.suspend(noflush=True))
    await settle()
    assert md.info().deferred == 1  # "queued" is on the pushback list
    a.hold = False
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    info = md.info()
    assert (info.state, info.suspending, info.noflush_suspending, info.block_io) == (
        DeviceState.ACTIVE, False, False, False)
    assert "presuspend_undo@0" in CALLS and "presuspend_undo@100" in CALLS
    await settle()
    assert queued.status is Status.OK  # reissued as the device unblocked
    assert not inflight.done
    b.release()  # plain in-flight I/O is unaffected
    assert inflight.status is Status.OK


@async_test
async def test_requeue_after_interrupted_suspend_is_eio() -> None:
    md, r, _, b = interrupted_setup()
    inflight = r.submit(md, "inflight", Op.WRITE, 110, 1, b"i")
    task = asyncio.create_task(md.suspend(noflush=True))
    await settle()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    b.release(Status.REQUEUE)
    assert inflight.status is Status.EIO


@async_test
async def test_suspend_timeout_undoes_suspend() -> None:
    md, r, a, b = interrupted_setup()
    queued = r.submit(md, "queued", Op.WRITE, 10, 1, b"q")
    r.submit(md, "inflight", Op.WRITE, 110, 1, b"i")
    a.hold = False
    with pytest.raises(TimeoutError):
        await md.suspend(noflush=True, timeout=0.01)
    assert md.state is DeviceState.ACTIVE and not md.noflush_suspending()
    await settle()
    assert queued.status is Status.OK
    b.release()


@async_test
async def test_suspend_failure_after_flag_flushes_pushback() -> None:
    md, _, r, a, _ = setup()
    a.hold = a.multipath_like = True
    queued = r.submit(md, "queued", Op.WRITE, 10, 1, b"q")
    a.presuspend_error = DeviceError("presuspend failed")
    with pytest.raises(DeviceError):
        await md.suspend(noflush=True)
    assert md.state is DeviceState.ACTIVE and not md.noflush_suspending()
    assert CALLS == ["presuspend@0", "presuspend_undo@0"]
    assert not queued.done  # pushed back, then moved to the deferred list
    a.hold = False
    await settle()
    assert queued.status is Status.OK


@async_test
async def test_postsuspend_failure_returns_to_active() -> None:
    md, _, r, a, _ = setup()
    a.postsuspend_error = DeviceError("postsuspend failed")
    with pytest.raises(DeviceError):
        await md.suspend()
    assert md.state is DeviceState.ACTIVE
    assert r.submit(md, "w", Op.WRITE, 1, 1, b"w").status is Status.OK


@async_test
async def test_suspend_twice_is_state_error() -> None:
    md, _, _, a, _ = setup()
    a.hold = True
    Requests().submit(md, "w", Op.WRITE, 1, 1, b"w")
    task = asyncio.create_task(md.suspend())
    await settle()
    with pytest.raises(StateError):
        await md.suspend()
    with pytest.raises(StateError):
        await md.resume()
    a.release()
    await task
    with pytest.raises(StateError):
        await md.suspend()


@async_test
async def test_races_with_a_suspend_are_refused_at_once_naming_suspending() -> None:
    """While a suspend waits for held I/O, the device itself refuses a second suspend, a
    resume and a remove (even forced), without waiting; load and clear only touch the
    inactive slot and are allowed (as in the kernel). The suspend then completes."""
    md, devs, r, a, _ = setup()
    a.hold = True
    w = r.submit(md, "w", Op.WRITE, 1, 1, b"w")
    task = asyncio.create_task(md.suspend())
    await settle()
    assert md.state is DeviceState.SUSPENDING
    assert (md.info().state, md.info().suspending) == (DeviceState.ACTIVE, True)
    refusals = []
    for attempt in (md.suspend(), md.suspend(noflush=True), md.resume()):
        with pytest.raises(StateError) as err:
            await attempt
        refusals.append((err.value.what, err.value.state, err.value.required))
    with pytest.raises(StateError) as err:
        md.remove(force=True)
    refusals.append((err.value.what, err.value.state, err.value.required))
    assert refusals == [("suspend", "SUSPENDING", "ACTIVE"),
                        ("suspend", "SUSPENDING", "ACTIVE"),
                        ("resume", "SUSPENDING", "ACTIVE or SUSPENDED"),
                        ("remove", "SUSPENDING", "ACTIVE or SUSPENDED")]
    md.load(table("0 200 linear a 0", devs))
    md.clear()
    md.load(table("0 200 linear a 0", devs))
    assert not task.done() and not w.done
    a.release()
    await task
    assert w.status is Status.OK
    assert md.state is DeviceState.SUSPENDED
    await md.resume()
    assert md.status(StatusType.TABLE) == "0 200 linear a 0"
    assert md.state is DeviceState.ACTIVE


@async_test
async def test_two_suspends_started_together_only_one_runs() -> None:
    """Both coroutines are created before either runs: the guard runs when a coroutine
    starts, in the same step as its SUSPENDING, so the second is refused."""
    md, _, r, a, _ = setup()
    a.hold = True
    r.submit(md, "w", Op.WRITE, 1, 1, b"w")
    first = asyncio.create_task(md.suspend())
    second = asyncio.create_task(md.suspend(noflush=True))
    await asyncio.wait([second])
    err = second.exception()
    assert isinstance(err, StateError) and (err.state, err.required) == (
        "SUSPENDING", "ACTIVE")
    a.release()
    await first
    assert md.state is DeviceState.SUSPENDED
    assert CALLS == ["presuspend@0", "presuspend@100", "postsuspend@0", "postsuspend@100"]


@async_test
async def test_remove_after_an_interrupted_suspend_is_allowed() -> None:
    """A timed-out suspend leaves the device ACTIVE: the state no longer refuses."""
    md, _, r, a, _ = setup()
    a.hold = True
    w = r.submit(md, "w", Op.WRITE, 1, 1, b"w")
    with pytest.raises(TimeoutError):
        await md.suspend(timeout=0.01)
    assert md.state is DeviceState.ACTIVE
    md.remove(force=True)
    assert md.state is DeviceState.REMOVED
    a.release()
    await settle()
    assert w.done


@async_test
async def test_a_removed_device_refuses_every_control_operation() -> None:
    md, devs, _, _, _ = setup()
    md.remove()
    calls: list[Callable[[], object]] = [
        lambda: md.load(table(TWO, devs)), md.clear, md.open, md.remove,
        lambda: md.message(0, ["x"]), lambda: md.create(table(TWO, devs))]
    for call in calls:
        with pytest.raises(StateError) as err:
            call()
        assert err.value.state == "REMOVED"
    for coro in (md.suspend(), md.resume()):
        with pytest.raises(StateError) as err:
            await coro
        assert err.value.state == "REMOVED"


@pytest.mark.parametrize(("noflush", "expected"), [(True, Status.OK), (False, Status.EIO)])
@async_test
async def test_resume_of_active_device_suspends_as_asked(noflush: bool,
                                                         expected: Status) -> None:
    """A resume of an ACTIVE device with an inactive table suspends it first (the
    kernel's do_resume), noflush if asked (dmsetup resume --noflush): multipath-like
    queued I/O is pushed back and reissued to the new table; a flush fails it (seed
    001's matrix, through resume)."""
    md, devs, r, a, _ = setup()
    a.hold = a.multipath_like = True
    queued = r.submit(md, "queued", Op.WRITE, 10, 1, b"q")
    await settle()
    md.load(table("0 200 linear a 0", devs))
    assert await md.resume(noflush=noflush) is True
    await settle()
    assert queued.status is expected
    assert md.status(StatusType.TABLE) == "0 200 linear a 0"
    assert md.state is DeviceState.ACTIVE


@async_test
async def test_races_with_the_suspend_a_resume_implies() -> None:
    """A resume of an ACTIVE device with a table loaded is SUSPENDING while it drains:
    another resume, a suspend and a remove are refused like during any suspend; a load
    meanwhile replaces the table in the inactive slot, and that is the table swapped in
    (vudm has one inactive slot; the kernel's do_resume would swap in the one it found)."""
    md, devs, r, a, _ = setup()
    a.hold = True
    w = r.submit(md, "w", Op.WRITE, 1, 1, b"w")
    md.load(table("0 200 zero", devs))
    resume = asyncio.create_task(md.resume())
    await settle()
    assert md.state is DeviceState.SUSPENDING
    for attempt in (md.resume(), md.suspend()):
        with pytest.raises(StateError) as err:
            await attempt
        assert err.value.state == "SUSPENDING"
    with pytest.raises(StateError):
        md.remove(force=True)
    md.load(table("0 200 linear a 0", devs))
    a.release()
    assert await resume is True
    assert w.status is Status.OK
    assert md.status(StatusType.TABLE) == "0 200 linear a 0"
    assert (md.state, md.info().inactive_table) == (DeviceState.ACTIVE, False)


@async_test
async def test_suspend_resume_hook_order() -> None:
    md, devs, _, _, _ = setup()
    await md.suspend()
    md.load(table(TWO, devs))
    await md.resume()
    assert CALLS == [
        "presuspend@0", "presuspend@100", "postsuspend@0", "postsuspend@100",
        "preresume@0", "preresume@100", "dtr@100", "dtr@0", "resume@0", "resume@100",
    ]


@async_test
async def test_preresume_refusal_keeps_device_suspended() -> None:
    md, devs, _, _, _ = setup()
    await md.suspend()
    new = table(TWO, devs)
    md.load(new)
    for t in new.targets:
        assert isinstance(t, HoldTarget)
        t.preresume_error = DeviceError("not ready")
    with pytest.raises(DeviceError):
        await md.resume()
    info = md.info()
    assert (info.state, info.inactive_table) == (DeviceState.SUSPENDED, True)


@async_test
async def test_pushback_merged_into_deferred_when_idle() -> None:
    """Pushed-back I/O waits on the pushback list until nothing is in flight, then moves
    to the head of the deferred list."""
    md, r, _, b = interrupted_setup()
    queued = r.submit(md, "queued", Op.WRITE, 10, 1, b"q")
    r.submit(md, "inflight", Op.WRITE, 110, 1, b"i")
    task = asyncio.create_task(md.suspend(noflush=True))
    await settle()
    io = md._io  # the core's lists, observed directly
    assert (io.pushback, list(io.deferred), io.in_flight) == ([queued.bio], [], 1)
    b.release()
    await task
    assert (io.pushback, list(io.deferred)) == ([], [queued.bio])
