"""Mapping between guest block devices and the host-side PCI slots they sit in."""

from __future__ import annotations

import re

from guests.errors import GuestError

_DISK = re.compile(r"^(?:/dev/)?(vd[a-z]+)$")

# A guest shell line listing every virtio disk with its resolved sysfs path.
LIST_DISKS = 'for d in /sys/block/vd*; do [ -e "$d" ] && echo "${d##*/} $(readlink -f "$d")"; done'


def disk_name(dev: str) -> str:
    """``/dev/vdb`` or ``vdb`` -> ``vdb``; GuestError for anything else."""
    match = _DISK.match(dev)
    if match is None:
        raise GuestError(f"not a whole virtio disk name: {dev!r}")
    return match.group(1)


def find_disk_in_listing(listing: str, pci_address: str) -> str | None:
    """The disk (``vdb``) whose sysfs path goes through ``pci_address``, from LIST_DISKS."""
    for line in listing.splitlines():
        name, _, path = line.partition(" ")
        if f"/{pci_address}/" in path:
            return name
    return None
