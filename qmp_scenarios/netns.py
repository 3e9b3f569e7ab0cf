"""Network paths that die the way networks die: each NBD path server in a network
namespace of its own, joined to the client's namespace by a veth pair; bringing the
server's end down (``ip link set DEV down``) partitions the path. Nothing answers, no
FIN, no RST: the TCP connection hangs, as when a cable is pulled.

Everything is made by the rig and removed by it: one client namespace (where the vudm
daemon runs) and one namespace per path, with addresses only inside those namespaces,
so traffic flows only between this machine's own namespaces. Names carry a random token,
so rigs in parallel pytest workers never collide; the host's namespace gets no address,
no route and no interface.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import secrets
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
CLONE_NEWNET = 0x40000000
NBD_PORT = 10809


class NetnsError(Exception):
    """A namespace or link could not be made or changed (``ip`` said why)."""


async def ip(*args: str, timeout: float = 15.0) -> str:
    """Run ``ip ARGS``; raise NetnsError with its stderr when it fails."""
    proc = await asyncio.create_subprocess_exec(
        "ip", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise NetnsError(f"ip {' '.join(args)}: no answer in {timeout}s") from None
    if proc.returncode != 0:
        raise NetnsError(f"ip {' '.join(args)}: {err.decode(errors='replace').strip()}")
    return out.decode()


@dataclass(frozen=True)
class NetPath:
    """One path's namespace and link: the server listens on ``server_addr``:NBD_PORT
    inside ``netns``; ``server_dev`` is its end of the veth pair."""

    name: str
    netns: str
    server_dev: str
    client_dev: str
    server_addr: str
    client_addr: str

    def uri(self, export: str = "disk", timeout: float | None = None) -> str:
        query = "" if timeout is None else f"?timeout={timeout:g}"
        return f"nbd://{self.server_addr}:{NBD_PORT}/{export}{query}"


class NetRig:
    """``async with NetRig() as net:`` a client namespace; ``await net.add_path(name)``
    a path namespace joined to it; ``await net.set_link(name, up)`` partitions or heals
    it. Leaving the block deletes every namespace (and so every veth) it made."""

    def __init__(self) -> None:
        self.token = secrets.token_hex(3)
        self.client_netns = f"vudm-{self.token}-c"
        self.paths: dict[str, NetPath] = {}
        self._made: list[str] = []

    async def __aenter__(self) -> NetRig:
        await self._add_netns(self.client_netns)
        await ip("-n", self.client_netns, "link", "set", "lo", "up")
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Delete the namespaces (their veth ends go with them); idempotent."""
        made, self._made = self._made, []
        for ns in reversed(made):
            try:
                await ip("netns", "del", ns)
            except NetnsError as e:
                log.warning("netns %s not removed: %s", ns, e)

    async def _add_netns(self, name: str) -> None:
        await ip("netns", "add", name)
        self._made.append(name)

    async def add_path(self, name: str) -> NetPath:
        """A namespace for path ``name`` and a veth pair to the client's namespace,
        with a /30 of its own (10.77.N.0)."""
        n = len(self.paths) + 1
        if n > 250:
            raise NetnsError("at most 250 network paths per rig")
        path = NetPath(name=name, netns=f"vudm-{self.token}-{n}",
                       server_dev=f"v{self.token}s{n}", client_dev=f"v{self.token}c{n}",
                       server_addr=f"10.77.{n}.2", client_addr=f"10.77.{n}.1")
        await self._add_netns(path.netns)
        # made in the client namespace, the server end moved into the path's namespace:
        # no end ever sits in the host's namespace
        await ip("-n", self.client_netns, "link", "add", path.client_dev, "type", "veth",
                 "peer", "name", path.server_dev, "netns", path.netns)
        await ip("-n", self.client_netns, "addr", "add", f"{path.client_addr}/30",
                 "dev", path.client_dev)
        await ip("-n", path.netns, "addr", "add", f"{path.server_addr}/30",
                 "dev", path.server_dev)
        for ns, dev in ((self.client_netns, path.client_dev), (path.netns, path.server_dev),
                        (path.netns, "lo")):
            await ip("-n", ns, "link", "set", dev, "up")
        self.paths[name] = path
        log.info("network path %s: %s (%s) <-> %s (%s in %s)", name, path.client_dev,
                 path.client_addr, path.server_dev, path.server_addr, path.netns)
        return path

    async def set_link(self, name: str, up: bool) -> None:
        """Bring path ``name``'s client end up or down: down partitions the path (nothing
        leaves, nothing arrives, open connections hang; new ones are refused).

        Not the server's end: with that one down, this kernel keeps what the client
        sends into the partition and delivers it once the link is back, after the
        client gave up on those requests (seen here: a timed-out write landing on the
        disk after the heal, although the client had reset the connection)."""
        path = self.paths[name]
        await ip("-n", self.client_netns, "link", "set", path.client_dev,
                 "up" if up else "down")
        log.info("network path %s: link %s", name, "up" if up else "down (partitioned)")

    def exec_prefix(self, netns: str | None = None) -> tuple[str, ...]:
        """argv prefix that runs a command in ``netns`` (default: the client's)."""
        return ("ip", "netns", "exec", netns or self.client_netns)


def run_in_netns(netns: str, fn: Callable[[], Coroutine[Any, Any, T]],
                 timeout: float = 300.0) -> T:
    """Run ``asyncio.run(fn())`` on a thread that entered ``netns`` (setns affects only
    the calling thread), so a test's own sockets live in the rig's client namespace."""
    box: dict[str, Any] = {}

    def body() -> None:
        try:
            _setns(netns)
            box["value"] = asyncio.run(asyncio.wait_for(fn(), timeout))
        except BaseException as e:  # handed to the caller's thread
            box["error"] = e

    thread = threading.Thread(target=body, name=f"netns-{netns}")
    thread.start()
    thread.join(timeout + 30)
    if thread.is_alive():
        raise NetnsError(f"the code run in {netns} did not end in {timeout}s")
    if "error" in box:
        raise box["error"]
    value: T = box["value"]
    return value


def _setns(netns: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/run/netns/{netns}", os.O_RDONLY | os.O_CLOEXEC)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise NetnsError(f"setns({netns}): {os.strerror(err)}")
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)
