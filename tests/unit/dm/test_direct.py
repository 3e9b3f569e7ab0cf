"""The direct path: a whole read or write on a table that is one linear target goes
straight to the device (``IoPath.submit_bio``), with no DmIo and no map() call.

It must be indistinguishable from the general path: the same data and status, counted
in flight (a suspend waits for it), the same evidence counters, a device error counted
once, a device's REQUEUE pushed back during a noflush suspend. Which path a request took
shows in what the device is handed as the completion: a ``functools.partial`` (direct)
or the DmIo itself (general).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Sequence
from typing import Any

from backend.blockio import Completion, IoVec, Op, Status
from backend.devices.mem import MemDevice
from backend.dm import MappedDevice
from backend.dm.io import DmIo

from .support import Devices, Requests, ValidatedBio, async_test, settle, table


class HoldingDevice(MemDevice):
    """A memory device that can hold requests and end them later with a chosen status."""

    def __init__(self, name: str, size: int) -> None:
        super().__init__(name, size)
        self.hold = False
        self.held: list[tuple[Op, int, int, list[IoVec], Completion]] = []
        self.callbacks: list[Completion] = []

    def submit(self, op: Op, offset: int, length: int, iovecs: Sequence[IoVec],
               done: Completion) -> None:
        self.callbacks.append(done)
        if self.hold:
            self.held.append((op, offset, length, list(iovecs), done))
        else:
            super().submit(op, offset, length, iovecs, done)

    def release(self, status: Status | None = None) -> None:
        held, self.held = self.held, []
        for op, offset, length, iovecs, done in held:
            if status is None:
                super().submit(op, offset, length, iovecs, done)
            else:
                done(status)


def setup(text: str = "0 100 linear a 10") -> tuple[MappedDevice, HoldingDevice, Requests]:
    devs = Devices()
    dev = HoldingDevice("a", 200 * 512)
    devs.devs["a"] = dev
    md = MappedDevice("m")
    md.create(table(text, devs))
    return md, dev, Requests()


def submit(md: MappedDevice, r: Requests, name: str, op: Op, sector: int, nr: int,
           fill: bytes = b"", *, validated: bool = True, **flags: bool) -> Any:
    """A request through ``md``; validated (as from vhost/) unless asked otherwise."""
    req = r.make(name, op, sector, nr, fill, **flags)
    if validated:
        b = req.bio
        req.bio = ValidatedBio(b.op, b.sector, b.nr_sectors, b.iovecs, b.done,
                               preflush=b.preflush, fua=b.fua)
    md.submit_bio(req.bio)
    return req


def took_direct(dev: HoldingDevice) -> bool:
    """Whether the last request reached ``dev`` directly (the flush that may follow a
    FUA write is the clone's own and does not count)."""
    done = next(d for d in reversed(dev.callbacks) if isinstance(d, (functools.partial, DmIo)))
    return isinstance(done, functools.partial)


@async_test
async def test_a_whole_read_or_write_of_one_linear_target_goes_straight_to_the_device(
) -> None:
    md, dev, r = setup()
    w = submit(md, r, "w", Op.WRITE, 5, 4, b"direct")
    assert took_direct(dev) and w.status is Status.OK
    assert dev.read((10 + 5) * 512, 6) == b"direct"  # the linear offset applied
    rd = submit(md, r, "r", Op.READ, 5, 4)
    assert took_direct(dev) and rd.status is Status.OK
    assert rd.data()[:6] == b"direct"
    stats = md.stats()
    assert stats["ios"] == 2 and stats["pieces"] == [2] and stats["eio"] == 0


@async_test
async def test_what_the_direct_path_leaves_to_the_general_one() -> None:
    md, dev, r = setup()
    cases = [
        dict(validated=False),  # buffers not checked at an edge: the core checks them
        dict(fua=True),  # FUA is emulated with a flush after the write
        dict(preflush=True),  # the preflush fans out first
    ]
    for flags in cases:
        w = submit(md, r, f"w{flags}", Op.WRITE, 5, 4, b"general", **flags)
        await settle()
        assert not took_direct(dev), flags
        assert w.status is Status.OK, flags
    beyond = submit(md, r, "beyond", Op.WRITE, 98, 4, b"x")
    assert beyond.status is Status.EIO and not took_direct(dev)
    md2, dev2, r2 = setup("0 50 linear a 10\n50 50 linear a 100")  # two targets
    submit(md2, r2, "w", Op.WRITE, 5, 4, b"x")
    assert not took_direct(dev2)


@async_test
async def test_a_suspend_waits_for_direct_io_in_flight() -> None:
    md, dev, r = setup()
    dev.hold = True
    w = submit(md, r, "w", Op.WRITE, 0, 8, b"held")
    assert took_direct(dev) and md.info().in_flight == 1
    suspend = asyncio.ensure_future(md.suspend())
    await settle()
    assert not suspend.done()
    dev.release()
    await asyncio.wait_for(suspend, 5.0)
    assert w.status is Status.OK and md.info().in_flight == 0


@async_test
async def test_a_device_error_reaches_the_request_and_is_counted_once() -> None:
    md, dev, r = setup()
    dev.hold = True
    w = submit(md, r, "w", Op.WRITE, 0, 8, b"x")
    dev.release(Status.EIO)
    assert w.status is Status.EIO
    assert md.stats()["eio"] == 1 and md.info().in_flight == 0


@async_test
async def test_a_device_requeue_during_a_noflush_suspend_is_pushed_back() -> None:
    md, dev, r = setup()
    dev.hold = True
    w = submit(md, r, "w", Op.WRITE, 0, 8, b"again")
    suspend = asyncio.ensure_future(md.suspend(noflush=True))
    await settle()
    dev.release(Status.REQUEUE)
    await asyncio.wait_for(suspend, 5.0)
    assert not w.done and md.info().deferred == 1 and md.stats()["pushed-back"] == 1
    dev.hold = False
    await md.resume()
    await settle()
    assert w.status is Status.OK and dev.read(10 * 512, 5) == b"again"
