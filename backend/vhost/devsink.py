"""A BioSink straight over one BlockDevice, for tests and benchmarks without the dm core.

The mapped device is the real sink; this adapter lets vhost/ be tested (and compared with
qemu-storage-daemon) over a plain ``file:`` device with nothing in between.
"""

from __future__ import annotations

from backend.blockio import SECTOR_SHIFT, Bio, BlockDevice, Op, Status


class DeviceSink:
    """Submit each bio whole to ``device`` (a preflush becomes a FLUSH first)."""

    def __init__(self, device: BlockDevice) -> None:
        self.device = device

    @property
    def size_sectors(self) -> int:
        return self.device.size >> SECTOR_SHIFT

    def submit_bio(self, bio: Bio) -> None:
        if bio.preflush and bio.op is Op.WRITE:
            def after_flush(status: Status) -> None:
                if status is Status.OK:
                    self._submit(bio)
                else:
                    bio.done(status)
            self.device.submit(Op.FLUSH, 0, 0, (), after_flush)
            return
        self._submit(bio)

    def _submit(self, bio: Bio) -> None:
        nbytes = bio.nr_sectors << SECTOR_SHIFT
        self.device.submit(bio.op, bio.sector << SECTOR_SHIFT, nbytes, bio.iovecs, bio.done)
