"""vhost-user-blk exports against a real Linux guest (TCG): what the guest sees and does.

The export sits straight on a file (``DeviceSink`` over ``FileDevice``): this checks the
vhost layer alone, the dm core has its own tests. The backend runs in the test's process
where the test needs to watch bios, and as a child process (``serve_file``) where it
must be SIGKILLed and restarted for real.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from backend.blockio import Bio, Op
from backend.devices.file import FileDevice
from backend.vhost.blk import VhostUserBlkExport
from backend.vhost.devsink import DeviceSink
from backend.vhost.libvhost import NATIVE_DIR
from guests.fio import run_fio, start_fio
from guests.fio_job import verify_job

if TYPE_CHECKING:
    from conftest import RunningGuest  # tests/integration/conftest.py (the guest fixture)

pytestmark = [
    pytest.mark.guest,
    pytest.mark.skipif(not (NATIVE_DIR / "libvhost-user.so").exists(),
                       reason="needs `make native`"),
]
log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 120.0


class MaxSizeSink(DeviceSink):
    """A DeviceSink remembering the largest read it was asked for."""

    def __init__(self, device: FileDevice) -> None:
        super().__init__(device)
        self.max_read_sectors = 0

    def submit_bio(self, bio: Bio) -> None:
        if bio.op is Op.READ:
            self.max_read_sectors = max(self.max_read_sectors, bio.nr_sectors)
        super().submit_bio(bio)


def make_image(path: Path, size: int) -> Path:
    with path.open("wb") as f:
        f.truncate(size)
    return path


def test_capacity_serial_verify_big_requests_and_read_only(
    guest: RunningGuest, tmp_path: Path
) -> None:
    g, loop = guest.guest, guest.loop
    size = (48 << 20) + 3 * 512  # odd on purpose: the guest must see exactly this
    rw_dev = FileDevice("rw", make_image(tmp_path / "rw.img", size), loop=loop)
    ro_dev = FileDevice("ro", make_image(tmp_path / "ro.img", 8 << 20), read_only=True,
                        loop=loop)
    rw_sink = MaxSizeSink(rw_dev)
    rw = VhostUserBlkExport("rw", rw_sink, tmp_path / "rw.sock", serial="vudm-rw-serial",
                            num_queues=2, loop=loop)
    ro = VhostUserBlkExport("ro", DeviceSink(ro_dev), tmp_path / "ro.sock", writable=False,
                            serial="vudm-ro", loop=loop)
    rw.start()
    ro.start()
    try:
        # hotplug_vhost_user_blk checks /sys/block/vdX/serial against the serial given.
        dev = guest.call(g.hotplug_vhost_user_blk("rw", rw.socket_path, num_queues=2,
                                                   serial="vudm-rw-serial"))
        assert guest.call(g.disk_size(dev)) == size

        result = guest.call(run_fio(g, verify_job(dev, size="16M", iodepth=16)))
        assert result.ok, result
        assert result.verify_ok

        # One 1 MiB O_DIRECT read must reach the backend as one request (seg_max/size_max).
        out = guest.call(g.run(f"dd if={dev} of=/dev/null bs=1M count=4 iflag=direct"))
        assert out.exit_code == 0, out
        assert rw_sink.max_read_sectors == 2048

        ro_path = guest.call(g.hotplug_vhost_user_blk("ro", ro.socket_path, serial="vudm-ro"))
        assert guest.call(g.run(f"cat /sys/block/{Path(ro_path).name}/ro")).output.strip() == "1"
        read = guest.call(g.run(f"dd if={ro_path} of=/dev/null bs=4k count=16 iflag=direct"))
        assert read.exit_code == 0, read
        write = guest.call(g.run(
            f"dd if=/dev/zero of={ro_path} bs=4k count=1 oflag=direct conv=notrunc"))
        assert write.exit_code != 0, "a write to a read-only export succeeded"
        assert guest.call(g.kernel_io_errors()) == []
        assert rw.device.rejected == 0 and ro.device.rejected == 0
    finally:
        guest.call(rw.close())
        guest.call(ro.close())
        rw_dev.close()
        ro_dev.close()


class Backend:
    """``python -m backend.serve_file`` as a child: started, SIGKILLed, restarted."""

    def __init__(self, image: Path, socket_path: Path, log_path: Path, *args: str) -> None:
        self.image = image
        self.socket_path = socket_path
        self.log_path = log_path
        self.args = args
        self.proc: asyncio.subprocess.Process | None = None
        self.lines: asyncio.Queue[str] = asyncio.Queue()
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        rfd, wfd = os.pipe()
        with self.log_path.open("ab") as logf:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "backend.serve_file", str(self.image),
                str(self.socket_path), "--ready-fd", str(wfd), *self.args,
                cwd=ROOT, pass_fds=(wfd,), stdin=asyncio.subprocess.DEVNULL,
                stdout=logf, stderr=logf)
        os.close(wfd)
        self.lines = asyncio.Queue()
        reader = asyncio.StreamReader()
        await asyncio.get_running_loop().connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(rfd, "rb"))
        self._reader = asyncio.create_task(self._read(reader))
        await self.wait_line("ready")

    async def _read(self, reader: asyncio.StreamReader) -> None:
        while line := await reader.readline():
            await self.lines.put(line.decode().strip())

    async def wait_line(self, prefix: str) -> str:
        async with asyncio.timeout(TIMEOUT):
            while not (line := await self.lines.get()).startswith(prefix):
                pass
        return line

    async def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        await asyncio.wait_for(self.proc.wait(), TIMEOUT)
        self.proc = None

    async def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            await asyncio.wait_for(self.proc.wait(), TIMEOUT)
            self.proc = None
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def cpu_seconds(self) -> float:
        """user+sys CPU time the backend process has used so far."""
        assert self.proc is not None
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_verify_survives_backend_kill_restart_and_disconnect(
    guest: RunningGuest, tmp_path: Path
) -> None:
    g = guest.guest
    image = make_image(tmp_path / "disk.img", 64 << 20)
    backend = Backend(image, tmp_path / "vu.sock", tmp_path / "backend.log",
                      "--progress-every", "500", "--serial", "vudm-rc")

    async def scenario() -> None:
        await backend.start()
        try:
            dev = await g.hotplug_vhost_user_blk("d0", backend.socket_path, reconnect=1,
                                                 serial="vudm-rc")
            fio = await start_fio(g, verify_job(dev, size="24M", iodepth=16))
            # Mid-write: the backend dies with requests in flight, and comes back.
            await backend.wait_line("progress")
            await backend.kill()
            await backend.start()
            # Mid-run again: the backend drops the connection itself (drain, reconnect).
            await backend.wait_line("progress")
            backend.signal(signal.SIGUSR1)
            await backend.wait_line("progress")
            result = await fio.wait(TIMEOUT * 3)
            assert result.ok, result
            assert result.verify_ok
            assert await g.kernel_io_errors() == []
            await g.unplug("d0")
        finally:
            await backend.stop()

    guest.call(scenario())
    text = (tmp_path / "backend.log").read_text()
    assert text.count("front-end connected") >= 3, text
