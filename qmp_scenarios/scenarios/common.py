"""Building blocks shared by the multipath scenarios: tables and a standard set-up."""

from __future__ import annotations

from ..rig import Rig
from ..steps import add_nbd_path, attach_disk, boot_guest, create_dm

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


async def spanning_mpath_disk(rig: Rig, queue_if_no_path: bool = True) -> tuple[str, int]:
    """Two multipath targets (paths a0,a1 and b0,b1, all over the rig's image: like the
    kernel's, a path sees the mapped device's own sector numbers); the boundary sits 4 KiB
    past the middle so 64 KiB guest writes straddle it and are split. Returns the guest's
    /dev path and the boundary sector."""
    for p in ("a0", "a1", "b0", "b1"):
        await add_nbd_path(rig, p)
    half = rig.image_mb * MIB_SECTORS // 2 + 8
    total = rig.image_mb * MIB_SECTORS
    table = "\n".join([
        mpath_table(0, half, ["a0", "a1"], queue_if_no_path=queue_if_no_path),
        mpath_table(half, total - half, ["b0", "b1"], queue_if_no_path=queue_if_no_path),
    ])
    await create_dm(rig, "mp", table)
    await boot_guest(rig)
    return await attach_disk(rig, "mp", "d0"), half
