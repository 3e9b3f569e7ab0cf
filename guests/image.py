"""Where the guest image is and how the guest kernel is booted.

The image (kernel + initramfs) is built by ``images/build.sh`` (``make image``) into
``build/images/<hash>/``; ``build/images/current`` points at the newest one.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from guests.errors import GuestError

# console=ttyS0: the serial console is the log we keep. quiet keeps that console short
# (serial output is slow under TCG), while dmesg still holds every level, so block-layer
# I/O error lines (KERN_ERR) are there for kernel_io_errors(). panic=-1 with QEMU's
# -no-reboot turns a guest panic into a QEMU exit that the host sees at once.
# tsc=reliable avoids clocksource watchdog noise under TCG; mitigations=off buys speed.
GUEST_CMDLINE = "console=ttyS0 tsc=reliable panic=-1 quiet mitigations=off"

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class GuestImage:
    """A bootable guest: kernel, initramfs and the kernel command line it needs."""

    kernel: Path
    initrd: Path
    cmdline: str = GUEST_CMDLINE


def build_dir() -> Path:
    """The build tree (``$VUDM_BUILD_DIR`` or ``<repo>/build``)."""
    return Path(os.environ.get("VUDM_BUILD_DIR", REPO_ROOT / "build"))


def find_image(images_dir: Path | None = None) -> GuestImage:
    """Return the current built image; GuestError if none is built yet."""
    current = (images_dir or build_dir() / "images") / "current"
    kernel, initrd = current / "vmlinuz", current / "initrd.img"
    if not (current / "ready").is_file() or not kernel.is_file() or not initrd.is_file():
        raise GuestError(f"no guest image at {current}: run make image")
    # Resolve the link now, so a rebuild while the guest runs does not change its files.
    return GuestImage(kernel=kernel.resolve(), initrd=initrd.resolve())


def build_image(timeout: float = 900.0) -> GuestImage:
    """Run ``images/build.sh`` (a no-op in about a second when the image is current)."""
    script = REPO_ROOT / "images" / "build.sh"
    try:
        proc = subprocess.run(
            ["bash", str(script)],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise GuestError(f"{script} did not finish within {timeout:.0f} s") from exc
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-20:])
        raise GuestError(f"{script} failed with exit code {proc.returncode}:\n{tail}")
    return find_image()
