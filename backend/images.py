"""Raw image files on the host, the two kinds every rig and bench here makes.

In the base layer because both the backend benches (daemon layer) and the scenario
rig (scenarios layer, which may not import backend internals) make images, and base
is the one layer both may import; it imports nothing of the project.
"""

from __future__ import annotations

import os
from pathlib import Path


def allocate_image(path: Path, size: int) -> Path:
    """A raw image of ``size`` bytes with its blocks allocated (zeros), made anew: native
    AIO writes into holes can block in io_submit on the daemon's loop thread (as with
    QEMU's aio=native), so no holes."""
    with path.open("wb") as f:
        os.posix_fallocate(f.fileno(), 0, size)
    return path


def fill_image(path: Path, size: int) -> Path:
    """A raw image written through once with random data, so reads hit the disk rather
    than holes or unwritten extents; kept between runs. A ``.filled`` stamp beside it is
    written last, so an image whose fill was interrupted is filled again."""
    stamp = path.with_suffix(".filled")
    if path.exists() and path.stat().st_size == size and stamp.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    chunk = os.urandom(1 << 20)
    with path.open("wb") as f:
        for _ in range(size >> 20):
            f.write(chunk)
        f.flush()
        os.fsync(f.fileno())
    stamp.write_text(f"{size}\n")
    return path
