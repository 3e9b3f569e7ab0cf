"""Multipath over other mapped devices (``dm:NAME``), and the null:/mem: URI schemes."""

from __future__ import annotations

import pytest

from backend.blockio import SECTOR_SIZE, Op, Status
from backend.devices.mem import MemDevice, NullDevice
from backend.devices.schemes import open_uri
from backend.dm import MappedDevice, parse_table
from backend.errors import DeviceError

from .mpath_support import Requests, async_test, mpaths, path_states, settle


@async_test
async def test_null_and_mem_schemes() -> None:
    null = await open_uri("n", "null:1M")
    mem = await open_uri("m", "mem:64K", read_only=True)
    assert isinstance(null, NullDevice) and null.size == 1 << 20
    assert isinstance(mem, MemDevice) and mem.size == 64 << 10 and mem.read_only
    for bad in ("mem:", "null:100", "mem:lots"):
        with pytest.raises(DeviceError, match="size"):
            await open_uri("x", bad)


@async_test
async def test_dm_scheme_is_refused_outside_a_daemon() -> None:
    with pytest.raises(DeviceError, match="no daemon"):
        await open_uri("x", "dm:vol0")
    with pytest.raises(DeviceError, match="needs a mapped device name"):
        await open_uri("x", "dm:")


@async_test
async def test_multipath_over_mapped_devices_fails_over_when_a_leg_errors() -> None:
    disk = MemDevice("disk", 200 * SECTOR_SIZE)
    legs = {n: MappedDevice(n) for n in ("leg0", "leg1")}
    for leg in legs.values():
        leg.create(parse_table("0 200 linear disk 0", lambda _: disk))

    # what the daemon's registry hands a table for dm:leg0 (tests/unit/control has the
    # daemon's own dm: lookups)
    devs = {f"dm:{n}": leg.as_block_device() for n, leg in legs.items()}
    assert legs["leg0"].info().open_count == 1
    md = MappedDevice("mp")
    md.create(parse_table("0 200 multipath 0 0 1 1 round-robin 0 2 0 dm:leg0 dm:leg1",
                          devs.__getitem__))
    r = Requests()
    assert r.submit(md, "w1", Op.WRITE, 10, 2, b"1").status is Status.OK
    # leg0 turns into an error device: the next I/O on it fails over to leg1
    await legs["leg0"].suspend()
    legs["leg0"].load(parse_table("0 200 error", lambda _: disk))
    await legs["leg0"].resume()
    for i in range(2):
        r.submit(md, f"w{i + 2}", Op.WRITE, 20 + i, 1, b"x")
    await settle()
    assert r.order == [("w1", Status.OK), ("w2", Status.OK), ("w3", Status.OK)]
    assert path_states(mpaths(md)[0]) == {"dm:leg0": "F", "dm:leg1": "A"}
    assert disk.read(20 * SECTOR_SIZE, 2 * SECTOR_SIZE) == b"x" * 1024
