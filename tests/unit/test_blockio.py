"""The shared I/O vocabulary's helpers that the hot path relies on."""

from __future__ import annotations

import struct

import pytest

from backend.blockio import IovArray, iov_array_aligned


def _array(iovecs: list[tuple[int, int]]) -> IovArray:
    raw = struct.pack(f"<{2 * len(iovecs)}Q", *[x for iov in iovecs for x in iov])
    return IovArray(iovecs, 0, raw)


@pytest.mark.parametrize("mask", [511, 4095])
def test_aligned_iovec_array(mask: int) -> None:
    block = mask + 1
    assert iov_array_aligned(_array([(block * (i + 7), block) for i in range(300)]), mask)


@pytest.mark.parametrize(("where", "bad"), [
    (0, (0x10_0001, 512)),     # a base off by one byte (bit 0 of the low byte)
    (150, (0x10_0100, 512)),   # off by 256 (bit 8: the second byte)
    (299, (0x10_0000, 513)),   # a ragged length, last segment
    (7, (0x10_0000, 0x7FFF_0000_0200 + 1)),  # a high bit set, but also bit 0
])
def test_a_misaligned_segment_anywhere_is_found(where: int, bad: tuple[int, int]) -> None:
    iovecs = [(0x20_0000 + 512 * i, 512) for i in range(300)]
    iovecs[where] = bad
    assert not iov_array_aligned(_array(iovecs), 511)


def test_high_bits_do_not_count_as_misaligned() -> None:
    """Only the bits of the mask are read: large addresses and lengths are fine."""
    assert iov_array_aligned(_array([(0x7FFF_DEAD_0000, 1 << 20), (1 << 40, 512)]), 511)


def test_4096_alignment_reads_the_second_byte() -> None:
    assert iov_array_aligned(_array([(0x1000, 0x1000)]), 4095)
    assert not iov_array_aligned(_array([(0x1200, 0x1000)]), 4095)  # 512-aligned only
    assert not iov_array_aligned(_array([(0x1000, 0x1800)]), 4095)
