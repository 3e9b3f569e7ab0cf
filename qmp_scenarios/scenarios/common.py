"""Building blocks shared by the multipath scenarios: tables and a standard set-up."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from backend.images import allocate_image

from ..rig import Rig
from ..steps import add_device, add_nbd_path, attach_disk, boot_guest, create_dm

MIB_SECTORS = 2048


def mpath_table(start: int, length: int, paths: list[str], *,
                queue_if_no_path: bool = True) -> str:
    """One dm-mpath line: one round-robin priority group over ``paths``."""
    features = "1 queue_if_no_path" if queue_if_no_path else "0"
    plist = " ".join(f"{p} 1" for p in paths)
    return (f"{start} {length} multipath {features} 0 1 1 round-robin 0 "
            f"{len(paths)} 1 {plist}")


async def mpath_disk(rig: Rig, paths: list[str], *, queue_if_no_path: bool = True,
                     name: str = "mp", network: bool = False,
                     timeout: float | None = None) -> str:
    """NBD paths over the rig's image, a multipath device over them, a booted guest with
    the device hotplugged; returns the guest's /dev path. ``network``: TCP paths that
    can be partitioned, with per-request ``timeout`` seconds."""
    for p in paths:
        await add_nbd_path(rig, p, network=network, timeout=timeout)
    sectors = rig.image_mb * MIB_SECTORS
    await create_dm(rig, name, mpath_table(0, sectors, paths,
                                           queue_if_no_path=queue_if_no_path))
    await boot_guest(rig)
    return await attach_disk(rig, name, "d0")


async def mpath_over_dm(rig: Rig, tables: dict[str, str], *,
                        queue_if_no_path: bool) -> str:
    """dm on dm: the mapped devices ``tables`` (name: table line), each added as the
    ``dm:`` path ``p`` + name of a multipath ``mp`` over the whole image; a booted guest
    with ``mp`` hotplugged. Returns the guest's /dev path."""
    for name, table in tables.items():
        await create_dm(rig, name, table)
    paths = [f"p{name}" for name in tables]
    for path, name in zip(paths, tables, strict=True):
        await add_device(rig, path, f"dm:{name}")
    await create_dm(rig, "mp", mpath_table(0, rig.image_mb * MIB_SECTORS, paths,
                                           queue_if_no_path=queue_if_no_path))
    await boot_guest(rig)
    return await attach_disk(rig, "mp", "d0")


SPAN_BLOCKS = 64
"""64 KiB blocks in the spanning region: block 0 straddles the boundary."""


@dataclass(frozen=True)
class SpanningDisk:
    """Two multipath targets and a fio region whose first 64 KiB block straddles them."""

    disk: str
    """The guest's /dev path."""
    boundary: int
    """The first sector of target 1 (4 KiB past the middle)."""
    images: tuple[Path, Path]
    """Target 0's paths serve the first image, target 1's the second."""

    @property
    def region_offset(self) -> str:
        """fio ``offset``: 4 KiB before the boundary, so block 0's first 4 KiB map to
        target 0 and the rest of it, and every other block, to target 1."""
        return f"{(self.boundary - 8) * 512}"

    @property
    def region_size(self) -> str:
        return f"{SPAN_BLOCKS * 64}k"


async def spanning_mpath_disk(rig: Rig, queue_if_no_path: bool = True) -> SpanningDisk:
    """Two multipath targets, paths a0,a1 for target 0 and b0,b1 for target 1; the
    boundary sits 4 KiB past the middle. Each target's paths have an image of their own
    (like the kernel's, a path sees the mapped device's sector numbers, and each target
    only ever touches its own range): the two halves of a split write never go through
    two NBD servers of one image, whose separate caches can lose one of them."""
    images = (rig.workdir / "span-a.img", rig.workdir / "span-b.img")
    for img in images:
        allocate_image(img, rig.image_mb << 20)
    for p in ("a0", "a1"):
        await add_nbd_path(rig, p, images[0])
    for p in ("b0", "b1"):
        await add_nbd_path(rig, p, images[1])
    half = rig.image_mb * MIB_SECTORS // 2 + 8
    total = rig.image_mb * MIB_SECTORS
    table = "\n".join([
        mpath_table(0, half, ["a0", "a1"], queue_if_no_path=queue_if_no_path),
        mpath_table(half, total - half, ["b0", "b1"], queue_if_no_path=queue_if_no_path),
    ])
    await create_dm(rig, "mp", table)
    await boot_guest(rig)
    return SpanningDisk(await attach_disk(rig, "mp", "d0"), half, images)
