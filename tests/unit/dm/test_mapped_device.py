"""Control operations: load/clear/resume swaps, info, events, messages, remove, stacking."""

from __future__ import annotations

import asyncio

import pytest

from backend.blockio import Op, Status
from backend.dm import DeviceState, MappedDevice, StatusType, TableEvent, TableEventKind
from backend.errors import DeviceError, MessageError, StateError, TableError

from .support import CALLS, Devices, Requests, async_test, settle, table, targets

ONE = "0 100 test-hold a 0"


def setup() -> tuple[MappedDevice, Devices, Requests]:
    devs = Devices(a=200, b=200)
    md = MappedDevice("c", uuid="UUID-1")
    md.create(table(ONE, devs))
    CALLS.clear()
    return md, devs, Requests()


@async_test
async def test_load_swaps_at_resume_only() -> None:
    md, devs, r = setup()
    md.load(table("0 100 linear b 0", devs))
    r.submit(md, "w1", Op.WRITE, 0, 1, b"1")
    assert devs.mem("a").read(0, 1) == b"1"  # the live table still maps to a
    await md.suspend()
    assert md.status(StatusType.TABLE) == "0 100 test-hold a 0"
    await md.resume()
    assert md.status(StatusType.TABLE) == "0 100 linear b 0"
    assert "dtr@0" in CALLS
    r.submit(md, "w2", Op.WRITE, 0, 1, b"2")
    assert devs.mem("b").read(0, 1) == b"2"
    assert not md.info().inactive_table


@async_test
async def test_bad_table_leaves_live_table() -> None:
    md, devs, r = setup()
    md.load(table("0 50 zero", devs))
    with pytest.raises(TableError) as err:
        md.load(table("0 100 linear a 0\n100 10 linear nowhere 0", devs))
    assert err.value.line == 2
    assert md.status(StatusType.TABLE) == "0 100 test-hold a 0"
    assert md.status(StatusType.TABLE, inactive=True) == "0 50 zero"
    assert r.submit(md, "w", Op.WRITE, 0, 1, b"w").status is Status.OK


@async_test
async def test_clear_drops_inactive_table() -> None:
    md, devs, _ = setup()
    md.load(table(ONE, devs))
    md.clear()
    assert not md.info().inactive_table
    assert CALLS == ["dtr@0"]


@async_test
async def test_resume_on_active_device_is_a_noop() -> None:
    """Linux's do_resume: not suspended and nothing loaded is a success that does
    nothing (no hook runs, no state changes); resume says so by returning False."""
    md, _, _ = setup()
    assert await md.resume() is False
    assert CALLS == [] and md.state is DeviceState.ACTIVE


@async_test
async def test_resume_of_active_device_with_inactive_table_suspends_swaps_resumes() -> None:
    """Linux's do_resume with a new map on a device that is not suspended: a flush
    suspend first (it waits for the write in flight on the old table), then the swap and
    the resume; I/O sent during it goes to the new table."""
    md, devs, r = setup()
    (hold,) = targets(md)
    hold.hold = True
    old_write = r.submit(md, "old", Op.WRITE, 0, 1, b"o")
    md.load(table("0 100 linear b 0", devs))
    resume = asyncio.create_task(md.resume())
    await settle()
    assert md.state is DeviceState.SUSPENDING and not resume.done()
    new_write = r.submit(md, "new", Op.WRITE, 1, 1, b"n")  # deferred
    hold.release()
    assert await resume is True
    await settle()
    assert (old_write.status, new_write.status) == (Status.OK, Status.OK)
    assert devs.mem("a").read(0, 1) == b"o" and devs.mem("b").read(512, 1) == b"n"
    assert CALLS == ["presuspend@0", "postsuspend@0", "dtr@0"]
    info = md.info()
    assert (info.state, info.live_table, info.inactive_table) == (
        DeviceState.ACTIVE, True, False)
    assert md.status(StatusType.TABLE) == "0 100 linear b 0"


@async_test
async def test_resume_whose_implied_suspend_fails_leaves_the_table_inactive() -> None:
    md, devs, _ = setup()
    (hold,) = targets(md)
    hold.postsuspend_error = DeviceError("postsuspend failed")
    md.load(table("0 100 linear b 0", devs))
    with pytest.raises(DeviceError):
        await md.resume()
    info = md.info()
    assert (info.state, info.block_io, info.inactive_table) == (
        DeviceState.ACTIVE, False, True)
    assert md.status(StatusType.TABLE) == "0 100 test-hold a 0"
    assert CALLS == ["presuspend@0", "postsuspend@0", "presuspend_undo@0"]


@async_test
async def test_create_suspended_and_io_before_the_table() -> None:
    devs = Devices(a=200)
    md = MappedDevice("late")
    r = Requests()
    early = r.submit(md, "early", Op.WRITE, 0, 1, b"e")  # no table yet: waits
    md.create(table("0 100 linear a 0", devs), suspended=True)
    info = md.info()
    assert (info.state, info.live_table, info.inactive_table) == (
        DeviceState.SUSPENDED, False, True)
    await settle()
    assert not early.done
    await md.resume()
    await settle()
    assert early.status is Status.OK
    with pytest.raises(StateError):
        md.create(table("0 100 linear a 0", devs))


@async_test
async def test_info_reports_state_tables_open_count_and_events() -> None:
    md, devs, _ = setup()
    md.open()
    md.load(table(ONE, devs))
    info = md.info()
    assert (info.name, info.uuid, info.state, info.live_table, info.inactive_table,
            info.open_count, info.event_nr, info.size_sectors) == (
        "c", "UUID-1", DeviceState.ACTIVE, True, True, 1, 0, 100)


@async_test
async def test_event_nr_and_wait() -> None:
    md, _, _ = setup()
    seen: list[tuple[str, int, TableEvent]] = []
    md.add_event_listener(lambda *event: seen.append(event))
    waiter = asyncio.create_task(md.wait(0, timeout=5))
    await settle()
    assert not waiter.done()
    assert md.message(5, ["event", "path-failed", "p0"]) == "raised"
    assert await waiter == 1
    assert seen == [("c", 1, TableEvent(TableEventKind.PATH_FAILED, "p0"))]
    assert await md.wait(0) == 1  # already risen: returns at once
    with pytest.raises(TimeoutError):
        await md.wait(1, timeout=0.01)


@async_test
async def test_message_routed_by_sector() -> None:
    devs = Devices(a=200)
    md = MappedDevice("msg")
    md.create(table("0 100 test-hold a 0\n100 100 test-hold a 100", devs))
    assert md.message(0, ["hello"]) == "0:hello"
    assert md.message(99, ["x", "y"]) == "0:x y"
    assert md.message(100, ["hello"]) == "100:hello"
    with pytest.raises(MessageError):
        md.message(200, ["hello"])
    await md.suspend()
    with pytest.raises(MessageError) as err:
        md.message(0, ["busy"])
    assert err.value.errno is Status.EBUSY


def test_message_to_target_without_messages() -> None:
    devs = Devices(a=200)
    md = MappedDevice("nomsg")
    md.create(table("0 100 zero", devs))
    with pytest.raises(MessageError) as err:
        md.message(0, ["anything"])
    assert err.value.errno is Status.EINVAL


@async_test
async def test_remove_refused_while_open_and_fails_queued_io() -> None:
    md, _, r = setup()
    md.open()
    with pytest.raises(StateError):
        md.remove()
    md.close()
    await md.suspend()
    w = r.submit(md, "w", Op.WRITE, 0, 1, b"w")
    md.remove()
    assert w.status is Status.EIO
    assert md.state is DeviceState.REMOVED
    assert "dtr@0" in CALLS
    assert r.submit(md, "after", Op.READ, 0, 1).status is Status.EIO
    with pytest.raises(StateError):
        await md.suspend()


@async_test
async def test_stacked_mapped_device() -> None:
    devs = Devices(a=200)
    lower = MappedDevice("lower")
    lower.create(table("0 200 linear a 0", devs))
    devs.devs["dm:lower"] = lower.as_block_device()
    upper = MappedDevice("upper")
    upper.create(table("0 100 linear dm:lower 100", devs))
    assert lower.info().open_count == 1
    r = Requests()
    assert r.submit(upper, "w", Op.WRITE, 5, 2, b"s").status is Status.OK
    assert devs.mem("a").read(105 * 512, 1024) == b"s" * 1024
    assert r.submit(upper, "f", Op.FLUSH).status is Status.OK
    # suspending the lower device holds the upper device's I/O
    await lower.suspend()
    w2 = r.submit(upper, "w2", Op.WRITE, 5, 1, b"t")
    await settle()
    assert not w2.done
    await lower.resume()
    await settle()
    assert w2.status is Status.OK
