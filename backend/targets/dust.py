"""dust: ``<dev> <offset> <blksz>`` - dm-dust, a disk whose chosen blocks fail to read.

Blocks are ``blksz`` bytes of ``dev``, numbered from its sector 0 as in the kernel. Bad
blocks are added and removed by message; while failing is ``enable``d, a read touching a
bad block fails with EIO (a "Read Medium Error") and a write to a bad block rewrites it,
so it leaves the list (or fails, while the block's write-fail count lasts), as a drive
remaps a sector on write. The trigger is explicit: nothing fails until ``enable``.
Messages and replies use the kernel's words; ``quiet`` silences the per-block log lines.
"""

from __future__ import annotations

from backend.blockio import SECTOR_SHIFT, Op
from backend.dm.args import ArgReader
from backend.dm.registry import register
from backend.dm.target import Clone, MapResult, StatusType, Target
from backend.errors import MessageError, TableError

MAX_BLKSZ_SECTORS = 2097152
"""DUST_MAX_BLKSZ_SECTORS (1 GiB)."""


@register("dust")
class DustTarget(Target):
    """dm-dust 1.0: a bad-block list (block -> write-fail count), off until enabled."""

    num_flush_bios = 1
    num_discard_bios = 1

    def ctr(self, args: list[str]) -> None:
        if len(args) != 3:
            raise TableError("dust: Invalid argument count")
        if not args[2].isdigit() or int(args[2]) == 0:
            raise TableError("dust: Invalid block size parameter")
        blksz = int(args[2])
        if blksz < 512:
            raise TableError("dust: Block size must be at least 512")
        if blksz & (blksz - 1):
            raise TableError("dust: Block size must be a power of 2")
        if blksz >> SECTOR_SHIFT > min(self.length, MAX_BLKSZ_SECTORS):
            raise TableError("dust: Block size is too large")
        if not args[1].isdigit():
            raise TableError("dust: Invalid device offset sector")
        reader = ArgReader(args)
        self.dev_name = reader.next("<dev>")
        self.offset = int(reader.next("<offset>"))
        self.blksz = blksz
        self.sect_per_block = blksz >> SECTOR_SHIFT
        self.dev = self.get_device(self.dev_name, self.offset, self.length)
        self.badblocks: dict[int, int] = {}
        """block -> write-fail count (writes that still fail before one rewrites it)."""
        self.reported: set[int] = set()
        """Bad blocks whose read failure has been logged."""
        self.fail_read_on_bb = False
        self.quiet = False
        self.faults = 0
        """Evidence: reads and writes failed on a bad block."""
        self.rewritten = 0
        """Evidence: bad blocks taken off the list by a write."""
        self.max_io_len = self.sect_per_block  # a clone never spans two blocks

    # --- I/O -------------------------------------------------------------------------

    def map(self, clone: Clone) -> MapResult:
        clone.remap(self.dev, self.offset + clone.target_offset)
        if not self.fail_read_on_bb or clone.op is Op.FLUSH:
            return MapResult.REMAPPED
        # dust_map_read/write: blocks are counted on the device (offset included).
        block = clone.sector // self.sect_per_block
        if block not in self.badblocks:
            return MapResult.REMAPPED
        if clone.op is Op.READ:
            if block not in self.reported:  # logged once per block, not per retry
                self.reported.add(block)
                self._info("dust: failing reads of bad block %d", block)
            self.faults += 1
            return MapResult.KILL
        # __dust_map_write: a write fails while the write-fail count lasts, then it
        # removes the block from the list.
        if self.badblocks[block] > 0:
            self.badblocks[block] -= 1
            self._info("dust: write to bad block %d failed", block)
            self.faults += 1
            return MapResult.KILL
        del self.badblocks[block]
        self.rewritten += 1
        self._info("block %d removed from badblocklist by write", block)
        return MapResult.REMAPPED

    def _info(self, fmt: str, *args: object) -> None:
        if not self.quiet:
            self.log.info(fmt, *args)

    # --- control ---------------------------------------------------------------------

    def message(self, argv: list[str]) -> str:
        """dust_message: the kernel's verbs, argument checks and reply texts."""
        verb = argv[0].lower()
        if len(argv) == 1:
            if verb in ("addbadblock", "removebadblock", "queryblock"):
                raise MessageError(f"{argv[0]} requires an additional argument")
            if verb in ("enable", "disable"):
                self.fail_read_on_bb = verb == "enable"
                self.reported.clear()
                text = f"{verb[:-1]}ing read failures on bad sectors"
                self.log.info("dust: %s", text)
                return ""  # logged, not answered, as by the kernel
            if verb == "countbadblocks":
                return f"countbadblocks: {len(self.badblocks)} badblock(s) found"
            if verb == "clearbadblocks":
                found, self.badblocks = bool(self.badblocks), {}
                self.reported.clear()
                return "dust_clear_badblocks: " + (
                    "badblocks cleared" if found else "no badblocks found")
            if verb == "quiet":
                self.quiet = not self.quiet
                return ""
            if verb == "listbadblocks":
                return "\n".join(str(b) for b in sorted(self.badblocks)) or \
                    "No blocks in badblocklist"
        elif len(argv) in (2, 3) and verb in ("addbadblock", "removebadblock", "queryblock"):
            return self._block_message(verb, argv)
        elif len(argv) > 3:
            raise MessageError(f"invalid number of arguments '{len(argv)}'")
        raise MessageError(f"unrecognized message '{argv[0]}' received")

    def _block_message(self, verb: str, argv: list[str]) -> str:
        if not argv[1].isdigit():
            raise MessageError(f"invalid block number {argv[1]!r}")
        block = int(argv[1])
        wr_fail_cnt = 0
        if len(argv) == 3:
            if verb != "addbadblock":
                raise MessageError(f"unrecognized message '{argv[0]}' received")
            if not argv[2].isdigit() or int(argv[2]) > 255:
                raise MessageError("selected write fail count out of range")
            wr_fail_cnt = int(argv[2])
        # The kernel compares with the device's size in blocks (block > size is refused).
        if block > (self.dev.size >> SECTOR_SHIFT) // self.sect_per_block:
            raise MessageError("selected block value out of range")
        if verb == "queryblock":
            found = "found" if block in self.badblocks else "not found"
            return f"dust_query_block: block {block} {found} in badblocklist"
        if verb == "addbadblock":
            if block in self.badblocks:
                raise MessageError(f"dust_add_block: block {block} already in badblocklist")
            self.badblocks[block] = wr_fail_cnt
            self.reported.discard(block)
            text = (f"dust_add_block: badblock added at block {block} "
                    f"with write fail count {wr_fail_cnt}")
        else:
            if self.badblocks.pop(block, None) is None:
                raise MessageError(f"dust_remove_block: block {block} not found in badblocklist")
            text = f"dust_remove_block: badblock removed at block {block}"
        self._info("%s", text)
        return ""  # the kernel logs it (DMINFO) and answers nothing

    def stats(self) -> dict[str, object]:
        """Evidence: I/Os failed on a bad block; bad blocks rewritten (off the list)."""
        return {"faults": self.faults, "rewritten": self.rewritten}

    def status(self, kind: StatusType) -> str:
        if kind is StatusType.TABLE:
            return f"{self.dev_name} {self.offset} {self.blksz}"
        mode = "fail_read_on_bad_block" if self.fail_read_on_bb else "bypass"
        return f"{self.dev_name} {mode} {'quiet' if self.quiet else 'verbose'}"
