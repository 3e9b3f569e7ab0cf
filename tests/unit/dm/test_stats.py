"""The evidence counters (query-dm ``stats``): exact values after known sequences of I/O,
so a scenario that declares ``split >= 1`` or ``pushed-back >= 1`` can rely on them."""

from __future__ import annotations

import asyncio

from targets.mpath_support import Paths, make_md, mpath_line

from backend.blockio import Op, Status
from backend.dm import MappedDevice, MapResult
from backend.dm.stats import add_counters

from .support import Devices, Requests, async_test, settle, table, targets

TWO_LINEAR = "0 100 linear a 0\n100 100 linear b 0"
TWO_HOLD = "0 100 test-hold a 0\n100 100 test-hold b 0"
TWO_MPATH = mpath_line(0, 100, "p0", "p1") + "\n" + mpath_line(100, 100, "p0", "p1")


def created(text: str, devs: Devices) -> MappedDevice:
    md = MappedDevice("md")
    md.create(table(text, devs))
    return md


def core(md: MappedDevice) -> dict[str, object]:
    """The core counters, without the per-target ones."""
    stats = dict(md.stats())
    del stats["targets"]
    return stats


def test_a_new_device_counts_nothing() -> None:
    md = created(TWO_LINEAR, Devices(a=100, b=100))
    assert md.stats() == {"ios": 0, "split": 0, "pieces": [0, 0], "requeued": 0,
                          "pushed-back": 0, "deferred-reissued": 0, "flushes": 0,
                          "flush-copies": 0, "eio": 0, "interrupted-suspends": 0,
                          "targets": [{}, {}]}


def test_split_pieces_flush_copies_and_eio() -> None:
    md = created(TWO_LINEAR, Devices(a=100, b=100))
    r = Requests()
    assert r.submit(md, "span", Op.WRITE, 96, 8, b"s").status is Status.OK
    assert r.submit(md, "first", Op.WRITE, 0, 8, b"f").status is Status.OK
    assert r.submit(md, "flush", Op.FLUSH).status is Status.OK
    assert r.submit(md, "outside", Op.READ, 196, 8).status is Status.EIO
    assert core(md) == {"ios": 4, "split": 1, "pieces": [2, 1], "requeued": 0,
                        "pushed-back": 0, "deferred-reissued": 0, "flushes": 1,
                        "flush-copies": 2, "eio": 1, "interrupted-suspends": 0}


@async_test
async def test_io_held_by_a_suspend_counts_as_deferred_reissued() -> None:
    md = created(TWO_LINEAR, Devices(a=100, b=100))
    await md.suspend()
    r = Requests()
    w = r.submit(md, "w", Op.WRITE, 120, 8, b"w")
    assert not w.done
    await md.resume()
    await settle()
    assert w.status is Status.OK
    assert core(md)["deferred-reissued"] == 1
    assert core(md)["pieces"] == [0, 1]


@async_test
async def test_a_requeued_split_piece_outside_noflush_fails_the_original_once() -> None:
    """seed 003 stage one, then EIO (no noflush suspend): one requeue, one EIO original,
    although the piece and its rewound clone both ended with an error."""
    md = created(TWO_HOLD, Devices(a=100, b=100))
    targets(md)[1].map_answer = MapResult.REQUEUE
    r = Requests()
    span = r.submit(md, "span", Op.WRITE, 96, 8, b"s")
    await settle()
    assert span.status is Status.EIO
    assert core(md) == {"ios": 1, "split": 1, "pieces": [1, 1], "requeued": 1,
                        "pushed-back": 0, "deferred-reissued": 0, "flushes": 0,
                        "flush-copies": 0, "eio": 1, "interrupted-suspends": 0}


@async_test
async def test_spanning_io_with_no_path_pushed_back_then_reissued_to_a_new_table() -> None:
    """seed 001 + 003 as the spanning scenario claims them: both pieces queued in
    multipath, handed back at a noflush suspend (two stage-one requeues, two pushbacks),
    reissued after load + resume; the old table's multipath counters survive the swap."""
    paths = Paths("p0", "p1", "p2")
    md = make_md(TWO_MPATH, paths)
    paths.kill("p0", "p1")
    r = Requests()
    span = r.submit(md, "span", Op.WRITE, 96, 8, b"s")
    await settle()
    assert not span.done
    await md.suspend(noflush=True)
    md.load(table(mpath_line(0, 100, "p2") + "\n" + mpath_line(100, 100, "p2"), paths))
    await md.resume()
    await settle()
    assert span.status is Status.OK
    stats = md.stats()
    assert {k: v for k, v in stats.items() if k != "targets"} == {
        "ios": 1, "split": 1, "pieces": [2, 2], "requeued": 2, "pushed-back": 2,
        "deferred-reissued": 2, "flushes": 0, "flush-copies": 0, "eio": 0,
        "interrupted-suspends": 0}
    # each target of the old table: its piece tried p0 then p1 (each fails, each try
    # queues it), then it was handed back once; the new table's clone went down p2
    per_target = {"paths": {"p0": {"ios": 1, "failures": 1}, "p1": {"ios": 1, "failures": 1},
                            "p2": {"ios": 1, "failures": 0}},
                  "path-failures": 2, "queued": 2, "requeued": 1}
    assert stats["targets"] == [per_target, per_target]


@async_test
async def test_a_cancelled_suspend_counts_as_interrupted() -> None:
    md = created(TWO_HOLD, Devices(a=100, b=100))
    targets(md)[0].hold = True
    r = Requests()
    w = r.submit(md, "w", Op.WRITE, 0, 8, b"w")
    suspend = asyncio.ensure_future(md.suspend(noflush=True))
    await settle()
    assert not suspend.done()  # waits for the held write
    suspend.cancel()
    await asyncio.gather(suspend, return_exceptions=True)
    targets(md)[0].release()
    await settle()
    assert w.status is Status.OK
    assert core(md)["interrupted-suspends"] == 1


def test_counters_add_by_key_and_keep_words() -> None:
    into: dict[str, object] = {"ios": 1, "paths": {"p0": {"ios": 2}}, "kind": "a"}
    add_counters(into, {"ios": 2, "paths": {"p0": {"ios": 1}, "p1": {"ios": 5}},
                        "kind": "b"})
    assert into == {"ios": 3, "paths": {"p0": {"ios": 3}, "p1": {"ios": 5}}, "kind": "b"}
