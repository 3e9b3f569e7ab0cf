"""The Debian guest (``distro/build.sh``, ``make distro``): a root file system image a
vudm disk serves, and Debian's own kernel and initrd to boot it with root=/dev/vda.

Unlike the busybox guest (everything in the initramfs), this one reads its whole root
file system through vudm: systemd, udev, journald, the agent (as a systemd service).
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from guests.errors import GuestError

from .image import REPO_ROOT, GuestImage, build_dir

# The root disk is the first (only) virtio-blk disk. A TCG boot is slow: no watchdog
# noise, no mitigations, no login on the serial console (its device can take longer than
# systemd waits for it under TCG, which would leave the system "degraded"), no service
# watchdogs and long start timeouts (a contended TCG guest misses journald's and udevd's
# 3-minute watchdog: they were killed and the system degraded); systemd's own log goes
# to the console only at warning level.
DISTRO_CMDLINE = ("console=ttyS0 root=/dev/vda rw rootwait panic=-1 tsc=reliable "
                  "mitigations=off quiet systemd.show_status=false loglevel=4 "
                  "systemd.mask=serial-getty@ttyS0.service systemd.service_watchdogs=0 "
                  "systemd.default_timeout_start_sec=900")


@dataclass(frozen=True)
class DistroImage:
    rootfs: Path
    kernel: Path
    initrd: Path

    def boot_image(self) -> GuestImage:
        return GuestImage(kernel=self.kernel, initrd=self.initrd, cmdline=DISTRO_CMDLINE)


def find_distro_image() -> DistroImage:
    current = build_dir() / "distro" / "current"
    if not (current / "ready").is_file():
        raise GuestError(f"no Debian guest image at {current}: run make distro")
    current = current.resolve()
    return DistroImage(current / "rootfs.img", current / "vmlinuz", current / "initrd.img")


def build_distro_image(timeout: float = 3600.0) -> DistroImage:
    """Run ``distro/build.sh`` (a no-op in about a second when the image is current)."""
    script = REPO_ROOT / "distro" / "build.sh"
    try:
        proc = subprocess.run(["bash", str(script)], capture_output=True, text=True,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise GuestError(f"{script} did not finish within {timeout:.0f} s") from exc
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-20:])
        raise GuestError(f"{script} failed with exit code {proc.returncode}:\n{tail}")
    return find_distro_image()
