"""Splitting at target boundaries and max_io_len; the two-stage requeue (seed 003)."""

from __future__ import annotations

import asyncio

import pytest

from backend.blockio import Op, Status
from backend.devices.mem import MemDevice
from backend.dm import DeviceState, MappedDevice, MapResult
from backend.dm.split import split_ranges

from .support import CALLS, Devices, HoldTarget, Requests, async_test, settle, table, targets

TWO = "0 100 test-hold a 0\n100 100 test-hold a 100"


def setup(text: str = TWO) -> tuple[MappedDevice, Devices, Requests, list[HoldTarget]]:
    devs = Devices(a=200)
    md = MappedDevice("s")
    md.create(table(text, devs))
    CALLS.clear()
    return md, devs, Requests(), targets(md)


def test_split_at_target_boundaries_and_max_io_len() -> None:
    devs = Devices(a=200)
    t = table("0 100 test-hold a 0\n100 100 test-hold a 100", devs)
    t.targets[1].max_io_len = 30
    pieces = [(p.begin, s, n) for p, s, n in split_ranges(t, 90, 100)]
    # boundaries of max_io_len count from the target's start (100, 130, 160, ...)
    assert pieces == [(0, 90, 10), (100, 100, 30), (100, 130, 30), (100, 160, 30)]


@async_test
async def test_split_write_reaches_every_piece() -> None:
    md, devs, r, ts = setup()
    ts[1].max_io_len = 8
    w = r.submit(md, "w", Op.WRITE, 95, 20, b"abc")
    assert w.status is Status.OK
    assert devs.mem("a").ops[Op.WRITE] == 3  # 95..100, 100..108, 108..115
    rd = r.submit(md, "r", Op.READ, 95, 20)
    assert rd.data() == w.data()


@async_test
async def test_split_original_completes_once_with_first_error() -> None:
    md, _, r, ts = setup()
    for t in ts:
        t.hold = True
    w = r.submit(md, "w", Op.WRITE, 98, 4, b"x")
    ts[1].release(Status.ENOSPC)
    assert not w.done
    ts[0].release(Status.EIO)
    assert w.statuses == [Status.ENOSPC]


@async_test
async def test_split_requeue_rewinds_only_the_piece() -> None:
    """Stage one parks the piece; the worker rewinds exactly its range; stage two pushes
    it back; at resume only that range is reissued and the original completes once."""
    md, devs, r, ts = setup()
    for t in ts:
        t.hold = True
    ts[0].multipath_like = True
    w = r.submit(md, "w", Op.WRITE, 90, 20, b"0123456789")
    task = asyncio.create_task(md.suspend(noflush=True))
    await settle()
    # piece 90..100 was requeued and rewound; piece 100..110 still in flight
    assert md.info().in_flight == 1 and md.info().deferred == 1
    ts[1].release()
    await task
    assert not w.done
    ts[0].hold = False
    writes_before = devs.mem("a").ops[Op.WRITE]
    await md.resume()
    await settle()
    assert w.statuses == [Status.OK]
    assert devs.mem("a").ops[Op.WRITE] == writes_before + 1  # only the piece
    assert devs.mem("a").read(90 * 512, 20 * 512) == w.data()


@async_test
async def test_split_requeue_outside_noflush_is_eio() -> None:
    md, _, r, ts = setup()
    ts[0].map_answer = None

    ts[1].map_answer = MapResult.REQUEUE
    w = r.submit(md, "w", Op.WRITE, 98, 4, b"x")
    assert not w.done  # stage one: parked for the worker
    await settle()
    assert w.statuses == [Status.EIO]
    assert md.info().in_flight == 0


@pytest.mark.parametrize("stage_two_first", [True, False])
@async_test
async def test_interrupted_noflush_suspend_and_a_requeued_split_piece(
        stage_two_first: bool) -> None:
    """A piece of a split write asks for REQUEUE while the noflush flag is set; then the
    suspend is cancelled. If stage two already ran, the piece is on the pushback list and
    is reissued (seed 001: not failed). If it is still parked for the requeue worker
    (stage one), stage two meets the cleared flag and the write gets EIO: it "hadn't
    been returned at the time" (seed 001), as the kernel's dm_handle_requeue decides
    only in stage two (seed 003)."""
    md, devs, r, ts = setup()
    ts[1].hold = True
    w = r.submit(md, "w", Op.WRITE, 98, 4, b"p")  # 98..100 done, 100..102 held
    ts[0].hold = True
    other = r.submit(md, "other", Op.WRITE, 10, 1, b"o")  # keeps the suspend waiting
    task = asyncio.create_task(md.suspend(noflush=True))
    await settle()
    assert md.noflush_suspending() and md.info().in_flight == 2
    ts[0].hold = ts[1].hold = False
    if stage_two_first:
        ts[1].release(Status.REQUEUE)
        await settle()  # the worker rewinds it and pushes it back
        assert md.info().deferred == 1
        task.cancel()
    else:
        task.cancel()  # delivered at the task's next step: after this release
        ts[1].release(Status.REQUEUE)
        assert md.noflush_suspending()  # the REQUEUE came while the flag was set
    with pytest.raises(asyncio.CancelledError):
        await task
    await settle()
    assert md.state is DeviceState.ACTIVE
    if stage_two_first:
        assert w.statuses == [Status.OK]
        assert devs.mem("a").read(98 * 512, 4 * 512) == w.data()
    else:
        assert w.statuses == [Status.EIO]
    ts[0].release()  # plain in-flight I/O is unaffected
    assert other.statuses == [Status.OK]
    assert (md.info().in_flight, md.info().deferred) == (0, 0)


@async_test
async def test_rewound_piece_is_split_again_by_the_new_table() -> None:
    md, devs, r, ts = setup()
    ts[0].hold = ts[0].multipath_like = True
    w = r.submit(md, "w", Op.WRITE, 90, 20, b"xyz")
    await md.suspend(noflush=True)
    devs.devs["b"] = MemDevice("b", 200 * 512)
    md.load(table("0 95 linear a 0\n95 105 linear b 95", devs))
    await md.resume()
    await settle()
    assert w.statuses == [Status.OK]
    assert devs.mem("b").read(95 * 512, 5 * 512) == w.data()[5 * 512:10 * 512]


@async_test
async def test_discard_without_support_is_eopnotsupp() -> None:
    md, _, r, ts = setup()
    ts[0].num_discard_bios = 0
    assert r.submit(md, "d", Op.DISCARD, 10, 4).status is Status.EOPNOTSUPP
    assert r.submit(md, "d2", Op.DISCARD, 110, 4).status is Status.OK


@async_test
async def test_discard_and_write_zeroes_split_like_data() -> None:
    md, devs, r, ts = setup()
    devs.mem("a").write(0, b"\xff" * 200 * 512)
    ts[1].max_io_len = 4
    assert r.submit(md, "d", Op.DISCARD, 98, 10).status is Status.OK
    assert r.submit(md, "z", Op.WRITE_ZEROES, 150, 3).status is Status.OK
    assert devs.mem("a").ops[Op.DISCARD] == 3  # 98..100, 100..104, 104..108
    assert devs.mem("a").read(98 * 512, 10 * 512) == bytes(10 * 512)
    assert devs.mem("a").read(150 * 512, 3 * 512) == bytes(3 * 512)
    assert devs.mem("a").read(108 * 512, 512) == b"\xff" * 512


@async_test
async def test_io_outside_the_device_is_eio() -> None:
    md, _, r, _ = setup()
    assert r.submit(md, "past", Op.READ, 199, 2).status is Status.EIO


@async_test
async def test_loop_completing_device_keeps_order_and_counts() -> None:
    devs = Devices()
    devs.devs["a"] = MemDevice("a", 200 * 512, complete_on_loop=True)
    md = MappedDevice("l")
    md.create(table(TWO, devs))
    r = Requests()
    w = r.submit(md, "w", Op.WRITE, 95, 10, b"L")
    assert not w.done and md.info().in_flight == 2
    await md.suspend()
    assert w.statuses == [Status.OK]
