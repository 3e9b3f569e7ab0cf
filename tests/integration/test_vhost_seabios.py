"""vhost-user-blk against real QEMU without a guest OS: SeaBIOS boots from our disk.

A 512-byte boot sector that prints a marker on the serial port is served through the
export; seeing the marker proves the whole path (vhost-user handshake, memory table,
virtqueue, zero-copy read into guest memory, status byte, used ring, notify). Then the
backend drops the connection: QEMU (``reconnect=1``) comes back, and after a reset
SeaBIOS boots from the reconnected disk again.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from qemu.qmp import QMPClient

from backend.blockio import Bio, Op
from backend.devices.file import FileDevice
from backend.vhost.blk import VhostUserBlkExport
from backend.vhost.devsink import DeviceSink
from backend.vhost.libvhost import NATIVE_DIR

pytestmark = pytest.mark.skipif(
    not (NATIVE_DIR / "libvhost-user.so").exists() or not shutil.which("qemu-system-x86_64"),
    reason="needs `make native` and qemu-system-x86_64",
)

MARKER = b"VUDM-BOOT-OK"
TIMEOUT = 60.0


def boot_sector() -> bytes:
    """Real-mode code: print MARKER on COM1 (0x3f8), then halt."""
    code = bytes([
        0x31, 0xC0,        # xor ax, ax
        0x8E, 0xD8,        # mov ds, ax
        0xFC,              # cld
        0xBE, 0x17, 0x7C,  # mov si, 0x7c17 (the message)
        0xBA, 0xF8, 0x03,  # mov dx, 0x3f8
        0xAC,              # .loop: lodsb
        0x84, 0xC0,        # test al, al
        0x74, 0x03,        # jz .done
        0xEE,              # out dx, al
        0xEB, 0xF8,        # jmp .loop
        0xFA,              # .done: cli
        0xF4,              # hlt
        0xEB, 0xFC,        # jmp .done
    ])
    sector = code + MARKER + b"\r\n\0"
    return sector.ljust(510, b"\0") + b"\x55\xaa"


class CountingSink(DeviceSink):
    """A DeviceSink that counts the bios it sees (reads of sector 0 in particular)."""

    def __init__(self, device: FileDevice) -> None:
        super().__init__(device)
        self.reads_of_sector0 = 0

    def submit_bio(self, bio: Bio) -> None:
        if bio.op is Op.READ and bio.sector == 0:
            self.reads_of_sector0 += 1
        super().submit_bio(bio)


class Serial:
    """QEMU's COM1, connected to us: wait for text on it."""

    def __init__(self) -> None:
        self.data = b""
        self._changed = asyncio.Condition()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while chunk := await reader.read(4096):
            async with self._changed:
                self.data += chunk
                self._changed.notify_all()
        writer.close()

    async def wait_for(self, text: bytes, count: int = 1) -> None:
        async with self._changed:
            await asyncio.wait_for(
                self._changed.wait_for(lambda: self.data.count(text) >= count), TIMEOUT)


class Events:
    """connected/disconnected callbacks turned into awaitable counts."""

    def __init__(self) -> None:
        self.connects = 0
        self.disconnects = 0
        self._changed = asyncio.Event()

    def connected(self, _id: str) -> None:
        self.connects += 1
        self._changed.set()

    def disconnected(self, _id: str) -> None:
        self.disconnects += 1
        self._changed.set()

    async def wait(self, connects: int, disconnects: int) -> None:
        async with asyncio.timeout(TIMEOUT):
            while (self.connects, self.disconnects) < (connects, disconnects):
                self._changed.clear()
                await self._changed.wait()


@asynccontextmanager
async def seabios_vm(workdir: Path, vhost_socket: Path, serial: Serial) -> AsyncIterator[QMPClient]:
    """QEMU booting from the vhost-user-blk disk; QMP and COM1 connect back to us."""
    qmp_path, serial_path = workdir / "qmp.sock", workdir / "serial.sock"
    qmp = QMPClient("seabios")
    await qmp.start_server(str(qmp_path))
    serial_server = await asyncio.start_unix_server(serial.handle, serial_path)
    argv = [
        # maxcpus=2: TCG keeps the guest's barriers (guests/qemu_cmd.smp_option)
        "qemu-system-x86_64", "-accel", "tcg", "-smp", "1,maxcpus=2", "-m", "128",
        "-object", "memory-backend-memfd,id=mem,size=128M,share=on",
        "-machine", "pc,memory-backend=mem", "-nodefaults", "-display", "none",
        "-chardev", f"socket,id=ser,path={serial_path}", "-serial", "chardev:ser",
        "-chardev", f"socket,id=qmp,path={qmp_path}", "-mon", "chardev=qmp,mode=control",
        "-chardev", f"socket,id=vu,path={vhost_socket},reconnect=1",
        "-device", "vhost-user-blk-pci,chardev=vu,num-queues=1,bootindex=1",
    ]  # fmt: skip
    with (workdir / "qemu.log").open("wb") as qlog:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=qlog, stderr=qlog)
    try:
        await asyncio.wait_for(qmp.accept(), TIMEOUT)
        yield qmp
    finally:
        if qmp.runstate.name == "RUNNING":
            try:
                await asyncio.wait_for(qmp.execute("quit"), 10)
            except (TimeoutError, EOFError, ConnectionError):
                proc.kill()
        else:
            proc.kill()
        await asyncio.wait_for(proc.wait(), TIMEOUT)
        with contextlib.suppress(EOFError, ConnectionError):
            await qmp.disconnect()  # re-raises the EOF QEMU's exit caused
        serial_server.close()


def test_seabios_boots_through_export_and_survives_reconnect(tmp_path: Path) -> None:
    image = tmp_path / "disk.img"
    with image.open("wb") as f:
        f.write(boot_sector())
        f.truncate(16 << 20)

    async def main() -> None:
        device = FileDevice("boot", image)
        sink = CountingSink(device)
        events = Events()
        export = VhostUserBlkExport(
            "boot", sink, tmp_path / "vu.sock", serial="seabios",
            on_connected=events.connected, on_disconnected=events.disconnected)
        export.start()
        serial = Serial()
        try:
            async with seabios_vm(tmp_path, tmp_path / "vu.sock", serial) as qmp:
                await serial.wait_for(MARKER)
                assert sink.reads_of_sector0 >= 1
                assert export.device.rejected == 0

                export.disconnect()
                await events.wait(connects=2, disconnects=1)
                assert export.connected
                await qmp.execute("system_reset")
                await serial.wait_for(MARKER, count=2)
                assert export.device.rejected == 0
        finally:
            await export.close()
            device.close()
        assert events.disconnects == 2
        assert not (tmp_path / "vu.sock").exists()

    asyncio.run(main())
