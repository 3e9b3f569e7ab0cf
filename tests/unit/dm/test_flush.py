"""Flush fan-out, its error precedence, requeue and preflush writes (seed 004)."""

from __future__ import annotations

import asyncio

import pytest

from backend.blockio import Op, Status
from backend.dm import DeviceState, MappedDevice

from .support import Devices, HoldTarget, Requests, async_test, settle, table, targets

THREE = "0 100 test-hold a 0\n100 100 test-hold a 100\n200 100 test-hold a 200"


def setup() -> tuple[MappedDevice, Devices, Requests, list[HoldTarget]]:
    devs = Devices(a=300)
    md = MappedDevice("f")
    md.create(table(THREE, devs))
    return md, devs, Requests(), targets(md)


@async_test
async def test_flush_fans_out_num_flush_bios() -> None:
    md, devs, r, ts = setup()
    ts[1].num_flush_bios = 3
    ts[2].num_flush_bios = 0
    f = r.submit(md, "flush", Op.FLUSH)
    assert [t.flush_maps for t in ts] == [1, 3, 0]
    assert devs.mem("a").ops[Op.FLUSH] == 4
    assert f.status is Status.OK


@async_test
async def test_flush_completes_when_all_copies_have() -> None:
    md, _, r, ts = setup()
    ts[0].hold = ts[0].hold_flush = True
    f = r.submit(md, "flush", Op.FLUSH)
    assert not f.done
    ts[0].release()
    assert f.status is Status.OK


@pytest.mark.parametrize(
    ("answers", "expected"),
    [
        ((Status.EIO, Status.EOPNOTSUPP, Status.ENOSPC), Status.EOPNOTSUPP),
        ((Status.REQUEUE, Status.EOPNOTSUPP, Status.OK), Status.EOPNOTSUPP),
        ((Status.ENOSPC, Status.EIO, Status.OK), Status.ENOSPC),
        ((Status.OK, Status.EIO, Status.ENOSPC), Status.EIO),
    ],
)
@async_test
async def test_flush_error_precedence(answers: tuple[Status, ...], expected: Status) -> None:
    """EOPNOTSUPP over REQUEUE over the first error."""
    md, _, r, ts = setup()
    for t, answer in zip(ts, answers, strict=True):
        t.flush_status = answer
    f = r.submit(md, "flush", Op.FLUSH)
    assert f.status is expected


@async_test
async def test_flush_requeue_retries() -> None:
    """REQUEUE beats an error and retries the flush (outside a noflush suspend)."""
    md, _, r, ts = setup()
    ts[0].flush_status = Status.REQUEUE
    ts[1].flush_status = Status.EIO
    f = r.submit(md, "flush", Op.FLUSH)
    assert not f.done
    ts[0].flush_status = ts[1].flush_status = None
    await settle()
    assert f.status is Status.OK
    assert ts[0].flush_maps == 2


@async_test
async def test_flush_requeue_pushed_back_during_noflush() -> None:
    md, _, r, ts = setup()
    ts[0].hold = ts[0].hold_flush = ts[0].multipath_like = True
    f = r.submit(md, "flush", Op.FLUSH)
    await md.suspend(noflush=True)
    assert not f.done and md.info().deferred == 1
    ts[0].hold = False
    await md.resume()
    await settle()
    assert f.status is Status.OK


@async_test
async def test_no_flush_work_after_suspend() -> None:
    """A flush requeued during a flush suspend is not retried until resume."""
    md, _, r, ts = setup()
    ts[0].hold = ts[0].hold_flush = True
    f = r.submit(md, "flush", Op.FLUSH)
    task = asyncio.create_task(md.suspend())
    await settle()
    ts[0].hold = False
    ts[0].release(Status.REQUEUE)
    await task
    assert md.state is DeviceState.SUSPENDED
    maps = [t.flush_maps for t in ts]
    await settle()
    assert [t.flush_maps for t in ts] == maps  # nothing started while suspended
    assert not f.done
    await md.resume()
    await settle()
    assert f.status is Status.OK
    assert [t.flush_maps for t in ts] == [m + 1 for m in maps]


@async_test
async def test_preflush_write() -> None:
    """A write with preflush: an empty flush to every target, then the write alone."""
    md, devs, r, ts = setup()
    ts[0].hold = ts[0].hold_flush = True
    w = r.submit(md, "w", Op.WRITE, 150, 2, b"p", preflush=True)
    assert [t.flush_maps for t in ts] == [1, 1, 1]
    assert devs.mem("a").ops[Op.WRITE] == 0  # the data waits for the flush
    ts[0].hold = False
    ts[0].release()
    await settle()
    assert w.status is Status.OK
    assert devs.mem("a").ops[Op.WRITE] == 1
    assert [t.flush_maps for t in ts] == [1, 1, 1]  # the write went without the flag
    assert devs.mem("a").read(150 * 512, 1024) == b"p" * 1024


@async_test
async def test_preflush_failure_skips_write() -> None:
    md, devs, r, ts = setup()
    ts[2].flush_status = Status.EIO
    w = r.submit(md, "w", Op.WRITE, 10, 1, b"p", preflush=True)
    await settle()
    assert w.status is Status.EIO
    assert devs.mem("a").ops[Op.WRITE] == 0


@async_test
async def test_fua_write_flushes_the_device() -> None:
    md, devs, r, _ = setup()
    w = r.submit(md, "w", Op.WRITE, 10, 1, b"f", fua=True)
    assert w.status is Status.OK
    assert devs.mem("a").ops[Op.FLUSH] == 1
