"""NbdDevice against real qemu-storage-daemon NBD servers (no guest needed)."""

from __future__ import annotations

import asyncio
import ctypes
from pathlib import Path

import pytest

from backend.blockio import Op, Status
from backend.devices.nbd import NbdAddress, NbdDevice
from backend.devices.schemes import open_uri
from backend.errors import DeviceError
from qmp_scenarios.nbd_server import NbdServer
from qmp_scenarios.netns import NetRig, run_in_netns


class Buf:
    def __init__(self, size: int, fill: int = 0) -> None:
        self._raw = ctypes.create_string_buffer(size + 4096)
        self.addr = (ctypes.addressof(self._raw) + 4095) & ~4095
        self.size = size
        ctypes.memset(self.addr, fill, size)

    def data(self) -> bytes:
        return ctypes.string_at(self.addr, self.size)


async def io(dev: NbdDevice, op: Op, off: int, bufs: list[Buf]) -> Status:
    fut: asyncio.Future[Status] = asyncio.get_running_loop().create_future()
    dev.submit(op, off, sum(b.size for b in bufs), [(b.addr, b.size) for b in bufs],
               fut.set_result)
    return await asyncio.wait_for(fut, 10)


@pytest.fixture
def image(tmp_path: Path) -> Path:
    img = tmp_path / "disk.img"
    with img.open("wb") as f:
        f.truncate(8 << 20)
    return img


def test_read_write_many_in_flight(tmp_path: Path, image: Path) -> None:
    async def main() -> None:
        srv = NbdServer(tmp_path, "p0", image)
        await srv.start()
        try:
            dev = await open_uri("p0", srv.uri)
            assert isinstance(dev, NbdDevice)
            assert dev.size == 8 << 20
            bufs = [Buf(65536, i) for i in range(32)]
            sts = await asyncio.gather(*(io(dev, Op.WRITE, i * 65536, [b])
                                         for i, b in enumerate(bufs)))
            assert set(sts) == {Status.OK}
            assert await io(dev, Op.FLUSH, 0, []) is Status.OK
            reads = [Buf(65536) for _ in range(32)]
            sts = await asyncio.gather(*(io(dev, Op.READ, i * 65536, [b])
                                         for i, b in enumerate(reads)))
            assert set(sts) == {Status.OK}
            for i, b in enumerate(reads):
                assert b.data() == bytes([i]) * 65536
            dev.close()
        finally:
            await srv.stop()
        assert image.read_bytes()[65536 * 5:65536 * 6] == b"\x05" * 65536

    asyncio.run(main())


def test_killed_server_fails_inflight_then_reconnects(tmp_path: Path, image: Path) -> None:
    async def main() -> None:
        srv = NbdServer(tmp_path, "p0", image)
        await srv.start()
        dev = await open_uri("p0", srv.uri)
        assert isinstance(dev, NbdDevice)
        try:
            inflight = [io(dev, Op.WRITE, i * 1 << 20, [Buf(1 << 20, 7)]) for i in range(8)]
            tasks = [asyncio.ensure_future(t) for t in inflight]
            await srv.kill()
            sts = await asyncio.gather(*tasks)
            # every request either made it before the kill or failed as a lost path
            assert set(sts) <= {Status.OK, Status.ENOLINK}
            # the loss is seen at once: the next request fails without a timeout
            assert await io(dev, Op.READ, 0, [Buf(512)]) is Status.ENOLINK
            assert not dev.connected
            await srv.start()
            await dev.connect()
            assert await io(dev, Op.WRITE, 0, [Buf(4096, 9)]) is Status.OK
            r = Buf(4096)
            assert await io(dev, Op.READ, 0, [r]) is Status.OK
            assert r.data() == b"\x09" * 4096
        finally:
            dev.close()
            await srv.stop()

    asyncio.run(main())


def test_bad_export_name_is_a_clear_error(tmp_path: Path, image: Path) -> None:
    async def main() -> None:
        srv = NbdServer(tmp_path, "p0", image)
        await srv.start()
        try:
            addr = NbdAddress(export="nope", unix_path=str(srv.socket))
            with pytest.raises(DeviceError, match="nope"):
                await NbdDevice("x", addr).connect()
        finally:
            await srv.stop()

    asyncio.run(main())


def test_bad_uris() -> None:
    for uri, what in [("nbd+unix:///disk", "socket"), ("nbd:///disk", "host"),
                      ("bogus:/x", "unknown scheme"), ("/just/a/path", "no scheme")]:
        with pytest.raises(DeviceError, match=what):
            asyncio.run(open_uri("x", uri))


def test_hung_server_times_out_in_flight_requests_then_reconnects(
        tmp_path: Path, image: Path) -> None:
    """A frozen server (SIGSTOP) keeps the connection open and answers nothing: the
    per-request timeout drops the connection and fails what was in flight with ENOLINK
    (a path error multipath retries elsewhere), instead of hanging forever."""
    async def main() -> None:
        srv = NbdServer(tmp_path, "p0", image, timeout=1)
        await srv.start()
        dev = await open_uri("p0", srv.uri)
        assert isinstance(dev, NbdDevice) and dev.address.timeout == 1
        try:
            srv.daemon.pause(True)
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            sts = await asyncio.gather(*(io(dev, Op.WRITE, i << 16, [Buf(65536, 3)])
                                         for i in range(16)))
            took = loop.time() - t0
            assert set(sts) == {Status.ENOLINK}
            # the 1 s timeout did it: not before it, and long before the 30 s default
            assert 1.0 <= took < 15.0, took
            assert dev.timeouts == 1 and not dev.connected
            srv.daemon.pause(False)
            await dev.connect()
            assert await io(dev, Op.WRITE, 0, [Buf(4096, 9)]) is Status.OK
        finally:
            dev.close()
            await srv.stop()

    asyncio.run(main())


def test_partitioned_tcp_path_times_out_then_reconnects_when_healed(
        tmp_path: Path, image: Path) -> None:
    """nbd:// to a server in its own network namespace; its link goes down under I/O
    (the connection hangs: no FIN, no RST): the requests end with ENOLINK after the
    timeout; reconnecting fails while partitioned and works once the link is back, and
    none of the timed-out writes reached the disk."""
    async def setup() -> tuple[NetRig, NbdServer]:
        net = NetRig()
        await net.__aenter__()
        srv = NbdServer(tmp_path, "p0", image, net=await net.add_path("p0"), timeout=1)
        await srv.start()
        return net, srv

    async def in_client_netns(net: NetRig, srv: NbdServer) -> None:
        dev = await open_uri("p0", srv.uri)
        assert isinstance(dev, NbdDevice) and srv.net is not None
        assert dev.address.host == srv.net.server_addr
        try:
            assert await io(dev, Op.WRITE, 0, [Buf(65536, 1)]) is Status.OK
            await net.set_link("p0", up=False)
            sts = await asyncio.gather(*(io(dev, Op.WRITE, i << 16, [Buf(65536, 2)])
                                         for i in range(16)))
            assert set(sts) == {Status.ENOLINK} and dev.timeouts == 1
            with pytest.raises(DeviceError, match=r"10\.77"):
                await dev.connect(timeout=1)
            await net.set_link("p0", up=True)
            await dev.connect(timeout=10)
            r = Buf(65536)
            assert await io(dev, Op.READ, 0, [r]) is Status.OK
            assert r.data() == b"\x01" * 65536
        finally:
            dev.close()

    loop = asyncio.new_event_loop()
    net, srv = loop.run_until_complete(setup())
    try:
        run_in_netns(net.client_netns, lambda: in_client_netns(net, srv), timeout=60)
    finally:
        loop.run_until_complete(srv.stop())
        loop.run_until_complete(net.close())
        loop.close()
