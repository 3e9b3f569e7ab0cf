"""flakey: ``<dev> <offset> <up_s> <down_s> [<#features> <feature>...]`` - dm-flakey.

For ``up_s`` seconds I/O passes through to ``dev``; for the next ``down_s`` seconds the
features decide what happens, then the cycle repeats (the trigger is the clock, as in the
kernel: seconds since the table was constructed). Features: ``error_reads``,
``drop_writes`` (complete writes without doing them), ``error_writes``,
``corrupt_bio_byte <Nth_byte> <r|w> <value> <flags>``. With no feature at all, every I/O
fails while down. "Writes" are every non-READ op (flushes and discards too), as in the
kernel where their data direction is WRITE. Each up/down transition is logged once at
INFO, with the number of faults injected while down.
"""

from __future__ import annotations

import ctypes
from typing import NamedTuple

from backend.blockio import Op, Status, iov_from_bytes, iov_slice, iov_to_bytes
from backend.dm.args import ArgReader
from backend.dm.registry import register
from backend.dm.target import Clone, EndIo, EndIoResult, MapResult, StatusType, Target
from backend.errors import TableError

_DOWN = object()
"""clone.private of a clone mapped during a down interval."""

REQ_FUA = 1 << 17
"""Linux's REQ_FUA bit in bi_opf; the only request flag our clones carry."""

_SIMPLE = ("error_reads", "drop_writes", "error_writes")


class Corrupt(NamedTuple):
    """corrupt_bio_byte <Nth_byte> <direction> <value> <flags>."""

    nth: int
    """1-based byte of the bio to overwrite."""
    direction: str
    """"r" or "w"."""
    value: int
    flags: int
    """Only bios whose flags word has all these bits (0: every bio)."""

    def __str__(self) -> str:
        return f"corrupt_bio_byte {self.nth} {self.direction} {self.value} {self.flags}"


@register("flakey")
class FlakeyTarget(Target):
    """dm-flakey 1.5 without the random corruption features."""

    num_flush_bios = 1
    num_discard_bios = 1

    def ctr(self, args: list[str]) -> None:
        if len(args) < 4:
            raise TableError("flakey: Invalid argument count")
        reader = ArgReader(args)
        self.dev_name = reader.next("<dev>")
        self.offset = reader.next_uint("<offset>")
        self.up = reader.next_uint("<up interval>")
        self.down = reader.next_uint("<down interval>")
        if self.up + self.down == 0:
            raise TableError("flakey: Total (up + down) interval is zero")
        self.features: set[str] = set()
        self.corrupt: Corrupt | None = None
        if reader.remaining:
            self._parse_features(reader)
        reader.finish()
        self.error_all_io = not self.features and self.corrupt is None
        """No feature fails every I/O while down (flakey_map); the table prints no
        feature then, as the kernel's does ("... <down> 0")."""
        if self.error_all_io:
            self.features = {"error_reads", "error_writes"}
        self.dev = self.get_device(self.dev_name, self.offset, self.length)
        self.start_time = self.context.now()
        self.was_down = False
        self.faults = 0
        """Faults injected in the current down interval (logged when it ends)."""
        self.faults_before = 0
        """Faults of the down intervals that ended (evidence counter)."""

    def _parse_features(self, reader: ArgReader) -> None:
        """parse_features(): the kernel's checks and its words for each failure."""
        words = reader.next_group("feature args")
        if len(words) > 7:
            raise TableError("flakey: Invalid number of feature args")
        it = iter(words)
        for word in it:
            name = word.lower()
            if name in _SIMPLE:
                if name in self.features:
                    raise TableError(f"flakey: Feature {name} duplicated")
                self.features.add(name)
                if {"drop_writes", "error_writes"} <= self.features:
                    other = "error_writes" if name == "drop_writes" else "drop_writes"
                    raise TableError(f"flakey: Feature {name} conflicts with feature {other}")
            elif name == "corrupt_bio_byte":
                if self.corrupt is not None:
                    raise TableError("flakey: Feature corrupt_bio_byte duplicated")
                params = [next(it, None) for _ in range(4)]
                if None in params:
                    raise TableError("flakey: Feature corrupt_bio_byte requires 4 parameters")
                nth, direction, value, flags = (p or "" for p in params)
                if not nth.isdigit() or int(nth) < 1:
                    raise TableError("flakey: Invalid corrupt bio byte")
                if direction.lower() not in ("r", "w"):
                    raise TableError("flakey: Invalid corrupt bio direction (r or w)")
                if not value.isdigit() or int(value) > 255:
                    raise TableError(
                        "flakey: Invalid corrupt value to write into bio byte (0-255)")
                if not flags.isdigit() or int(flags) >= 1 << 32:
                    raise TableError("flakey: Invalid corrupt bio flags mask")
                self.corrupt = Corrupt(int(nth), direction.lower(), int(value), int(flags))
            else:
                raise TableError(f"flakey: Unrecognised flakey feature requested: {word!r}")
        direction = self.corrupt.direction if self.corrupt else ""
        for feature, clash in (("drop_writes", "w"), ("error_writes", "w"), ("error_reads", "r")):
            if feature in self.features and direction == clash:
                kind = "WRITE" if clash == "w" else "READ"
                raise TableError(f"flakey: {feature} is incompatible with corrupt_bio_byte "
                                 f"with the {kind} flag set")

    def _is_down(self) -> bool:
        """flakey_map's "Are we alive?": whole seconds since ctr, modulo the cycle."""
        elapsed = int(self.context.now() - self.start_time)
        down = elapsed % (self.up + self.down) >= self.up
        if down != self.was_down:
            self.was_down = down
            if down:
                self.log.info("flakey %s down for %ds: %s", self.dev_name, self.down,
                              " ".join(self._feature_words()))
            else:
                self.log.info("flakey %s up again after %d injected faults",
                              self.dev_name, self.faults)
                self.faults_before += self.faults
                self.faults = 0
        return down

    def _feature_words(self) -> list[str]:
        """The features in the kernel's status order."""
        return [w for w in _SIMPLE if w in self.features] + (
            [str(self.corrupt)] if self.corrupt else [])

    def map(self, clone: Clone) -> MapResult:
        clone.private = None
        if self._is_down():
            clone.private = _DOWN  # the kernel's bio_can_corrupt: end_io may corrupt reads
            if clone.op is Op.READ:
                if "error_reads" in self.features:
                    self.faults += 1
                    return MapResult.KILL
            elif "drop_writes" in self.features:
                self.faults += 1
                clone.complete(Status.OK)
                return MapResult.SUBMITTED
            elif "error_writes" in self.features:
                self.faults += 1
                clone.complete(Status.EIO)
                return MapResult.SUBMITTED
            elif self.corrupt and self._corrupts(clone, self.corrupt, "w"):
                # Corrupt a private copy (the kernel's clone_bio): the guest's buffer stays
                # intact, only what reaches the device is wrong.
                data = bytearray(iov_to_bytes(clone.iovecs))
                data[self.corrupt.nth - 1] = self.corrupt.value
                copy = ctypes.create_string_buffer(bytes(data), len(data))
                clone.private = copy  # keeps the copy alive until the clone ends
                clone.iovecs = [(ctypes.addressof(copy), len(data))]
                self.faults += 1
        clone.remap(self.dev, self.offset + clone.target_offset)
        return MapResult.REMAPPED

    @staticmethod
    def _corrupts(clone: Clone, corrupt: Corrupt, direction: str) -> bool:
        """corrupt_bio_byte applies: right direction, byte inside the bio, flags match."""
        if corrupt.direction != direction or not clone.op.has_data:
            return False
        opf = (1 if clone.op is Op.WRITE else 0) | (REQ_FUA if clone.fua else 0)
        return corrupt.nth <= clone.nbytes and opf & corrupt.flags == corrupt.flags

    def end_io(self, clone: Clone, status: Status) -> EndIoResult:
        # flakey_end_io: corrupt successful matching reads mapped while down.
        corrupt = self.corrupt
        if (status is Status.OK and clone.private is _DOWN and clone.op is Op.READ
                and corrupt is not None and self._corrupts(clone, corrupt, "r")):
            iov_from_bytes(iov_slice(clone.iovecs, corrupt.nth - 1, 1), bytes([corrupt.value]))
            self.faults += 1
        return EndIo.DONE

    def stats(self) -> dict[str, object]:
        """Evidence: faults injected (errors, dropped writes, corrupted bytes)."""
        return {"faults": self.faults_before + self.faults}

    def status(self, kind: StatusType) -> str:
        if kind is StatusType.INFO:
            return ""
        words = [] if self.error_all_io else self._feature_words()
        count = len(words) + (4 if self.corrupt else 0)
        return f"{self.dev_name} {self.offset} {self.up} {self.down} {count}" + "".join(
            f" {w}" for w in words)
