"""dust: argument checks, status, every message and its reply in the kernel's words, and
bad blocks failing reads (only while enabled) until a write rewrites them."""

from __future__ import annotations

import ctypes
import logging

import pytest

from backend.blockio import SECTOR_SIZE, Bio, BlockDevice, Op, Status
from backend.devices.mem import MemDevice
from backend.dm import MappedDevice, StatusType, parse_table
from backend.errors import DeviceError, MessageError, TableError
from backend.targets.dust import DustTarget

BLOCK = 4096
SECTORS = 64  # 8 blocks of 4 KiB


def resolve(name: str) -> BlockDevice:
    if name != "disk":
        raise DeviceError(f"no device {name!r}")
    return MemDevice("disk", SECTORS * SECTOR_SIZE)


def make(args: str = "disk 0 4096", length: int = SECTORS) -> tuple[MappedDevice, DustTarget]:
    md = MappedDevice("du")
    md.create(parse_table(f"0 {length} dust {args}", resolve))
    assert md.live_table is not None
    target = md.live_table.targets[0]
    assert isinstance(target, DustTarget)
    return md, target


def io(md: MappedDevice, op: Op, sector: int, count: int = 1) -> Status:
    """Submit one request; every device here completes synchronously."""
    size = count * SECTOR_SIZE if op.has_data else 0
    buf = ctypes.create_string_buffer(b"d" * size, max(size, 1))
    statuses: list[Status] = []
    md.submit_bio(Bio(op, sector, count, [(ctypes.addressof(buf), size)] if size else [],
                      statuses.append))
    assert len(statuses) == 1
    return statuses[0]


def msg(md: MappedDevice, text: str) -> str:
    return md.message(0, text.split())


@pytest.mark.parametrize(("args", "reason"), [
    ("disk 0", "Invalid argument count"),
    ("disk 0 4096 x", "Invalid argument count"),
    ("disk 0 abc", "Invalid block size parameter"),
    ("disk 0 0", "Invalid block size parameter"),
    ("disk 0 256", "Block size must be at least 512"),
    ("disk 0 1536", "Block size must be a power of 2"),
    ("disk 0 65536", "Block size is too large"),
    ("disk -1 4096", "Invalid device offset sector"),
    ("nodisk 0 4096", "device lookup failed"),
])
def test_bad_arguments_name_the_problem(args: str, reason: str) -> None:
    with pytest.raises(TableError) as exc:
        parse_table(f"0 {SECTORS} dust {args}", resolve)
    assert exc.value.line == 1
    assert reason in exc.value.reason


def test_status_round_trips_and_reports_mode() -> None:
    md, _ = make("disk 0 512")
    assert md.status(StatusType.TABLE) == f"0 {SECTORS} dust disk 0 512"
    again = parse_table(md.status(StatusType.TABLE), resolve)
    assert again.status(StatusType.TABLE) == md.status(StatusType.TABLE)
    assert md.status() == f"0 {SECTORS} dust disk bypass verbose"
    msg(md, "enable")
    msg(md, "quiet")
    assert md.status() == f"0 {SECTORS} dust disk fail_read_on_bad_block quiet"


def test_messages_reply_in_the_kernels_words() -> None:
    """As the guest kernel answers (the format oracle's dust sequence): add, remove,
    enable and disable are logged, not answered."""
    md, _ = make()
    assert msg(md, "addbadblock 3") == ""
    assert msg(md, "addbadblock 5 2") == ""
    assert msg(md, "queryblock 3") == "dust_query_block: block 3 found in badblocklist"
    assert msg(md, "queryblock 4") == "dust_query_block: block 4 not found in badblocklist"
    assert msg(md, "countbadblocks") == "countbadblocks: 2 badblock(s) found"
    assert msg(md, "listbadblocks") == "3\n5"
    assert msg(md, "removebadblock 3") == ""
    assert msg(md, "clearbadblocks") == "dust_clear_badblocks: badblocks cleared"
    assert msg(md, "clearbadblocks") == "dust_clear_badblocks: no badblocks found"
    assert msg(md, "countbadblocks") == "countbadblocks: 0 badblock(s) found"
    assert msg(md, "listbadblocks") == "No blocks in badblocklist"
    assert msg(md, "enable") == ""
    assert msg(md, "disable") == ""


@pytest.mark.parametrize(("text", "reason"), [
    ("addbadblock", "addbadblock requires an additional argument"),
    ("addbadblock x", "invalid block number"),
    ("addbadblock 9", "selected block value out of range"),
    ("addbadblock 1 256", "selected write fail count out of range"),
    ("removebadblock 1", "dust_remove_block: block 1 not found in badblocklist"),
    ("queryblock 1 2", "unrecognized message 'queryblock' received"),
    ("frobnicate", "unrecognized message 'frobnicate' received"),
    ("addbadblock 1 2 3", "invalid number of arguments '4'"),
])
def test_bad_messages_are_refused(text: str, reason: str) -> None:
    md, _ = make()
    with pytest.raises(MessageError) as exc:
        msg(md, text)
    assert exc.value.errno is Status.EINVAL
    assert reason in exc.value.reason


def test_duplicate_bad_block_is_refused() -> None:
    md, _ = make()
    msg(md, "addbadblock 2")
    with pytest.raises(MessageError, match="block 2 already in badblocklist"):
        msg(md, "addbadblock 2")


def test_bad_block_reads_fail_only_while_enabled() -> None:
    md, _ = make()
    msg(md, "addbadblock 1")
    assert io(md, Op.READ, 8) is Status.OK  # disabled: bypass
    msg(md, "enable")
    assert io(md, Op.READ, 8) is Status.EIO
    assert io(md, Op.READ, 15) is Status.EIO  # last sector of block 1
    assert io(md, Op.READ, 6, 4) is Status.EIO  # spans blocks 0 and 1
    assert io(md, Op.READ, 16) is Status.OK
    msg(md, "disable")
    assert io(md, Op.READ, 8) is Status.OK
    # evidence: three reads failed on the bad block; the one spanning two blocks was
    # split in two pieces (max_io_len) and counts as one EIO
    stats = md.stats()
    assert stats["targets"] == [{"faults": 3, "rewritten": 0}]
    assert (stats["ios"], stats["split"], stats["pieces"], stats["eio"]) == (6, 1, [7], 3)


def test_blocks_are_counted_on_the_device() -> None:
    md, _ = make("disk 8 4096", SECTORS - 8)  # target sector 0 is device block 1
    msg(md, "addbadblock 1")
    msg(md, "enable")
    assert io(md, Op.READ, 0) is Status.EIO


def test_write_removes_a_bad_block_after_its_write_fail_count() -> None:
    md, t = make()
    msg(md, "addbadblock 2 1")
    msg(md, "enable")
    assert io(md, Op.WRITE, 16) is Status.EIO  # write fail count 1: the first write fails
    assert io(md, Op.READ, 16) is Status.EIO
    assert io(md, Op.WRITE, 16) is Status.OK  # rewritten: no longer bad
    assert t.badblocks == {}
    assert io(md, Op.READ, 16) is Status.OK
    assert md.stats()["targets"] == [{"faults": 2, "rewritten": 1}]
    assert msg(md, "queryblock 2") == "dust_query_block: block 2 not found in badblocklist"


def test_flushes_pass_and_leave_the_list_alone() -> None:
    md, t = make()
    msg(md, "addbadblock 0")
    msg(md, "enable")
    assert io(md, Op.FLUSH, 0, 0) is Status.OK
    assert t.badblocks == {0: 0}


def test_failed_reads_are_logged_once_per_block(caplog: pytest.LogCaptureFixture) -> None:
    md, _ = make()
    msg(md, "addbadblock 1")
    msg(md, "enable")
    caplog.set_level(logging.INFO, logger="backend.targets.dust")
    for _ in range(3):
        io(md, Op.READ, 8)
    assert [(r.name, r.getMessage()) for r in caplog.records] == [
        ("backend.targets.dust.du", "dust: failing reads of bad block 1")]
    caplog.clear()
    msg(md, "quiet")
    msg(md, "addbadblock 2")
    io(md, Op.READ, 16)
    assert caplog.records == []
