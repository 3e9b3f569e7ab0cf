"""Multipath test support: paths to one in-memory disk that die, hold I/O and come back.

``PathDevice`` behaves like an NBD path: ``kill()`` drops the connection (I/O in flight
and every later request fail with ENOLINK), ``restart()`` brings the server back, and
``connect()`` (what the path checker calls) succeeds only once it is back. All paths of
a test share one ``MemDevice``: they are several ways to the same bytes.
"""

from __future__ import annotations

from collections.abc import Sequence

# tests/unit is on sys.path under pytest (its test packages are rooted there): the dm
# core's test support provides the request recorder, the runner and test-hold.
from dm.support import HoldTarget, Requests, async_test, settle

from backend.blockio import SECTOR_SHIFT, SECTOR_SIZE, BlockDevice, Completion, IoVec, Op, Status
from backend.devices.mem import MemDevice
from backend.dm import MappedDevice, TableEvent, parse_table
from backend.errors import DeviceError
from backend.targets.multipath import MultipathTarget

SIZE = 200
"""Sectors of the shared disk (and of the usual table)."""

Held = tuple[Op, int, int, list[IoVec], Completion]


class PathDevice:
    """One path to ``disk``; see the module docstring."""

    def __init__(self, name: str, disk: MemDevice) -> None:
        self._name = name
        self.disk = disk
        self.up = True
        self.connected = True
        self.error: Status | None = None
        """Answer every request with this status (a path that is up but failing)."""
        self.hold = False
        self.held: list[Held] = []
        self.log: list[tuple[Op, int]] = []
        """(op, sector) of every request submitted, in order."""
        self.connects = 0

    @property
    def name(self) -> str:
        return self._name

    @property
    def size(self) -> int:
        return self.disk.size

    @property
    def read_only(self) -> bool:
        return False

    def submit(self, op: Op, offset: int, length: int, iovecs: Sequence[IoVec],
               done: Completion) -> None:
        self.log.append((op, offset >> SECTOR_SHIFT))
        if not self.connected:
            done(Status.ENOLINK)
        elif self.error is not None:
            done(self.error)
        elif self.hold:
            self.held.append((op, offset, length, list(iovecs), done))
        else:
            self.disk.submit(op, offset, length, iovecs, done)

    def release(self, status: Status | None = None) -> None:
        """Complete the held requests: really (None) or with ``status``."""
        held, self.held = self.held, []
        for op, offset, length, iovecs, done in held:
            if status is None:
                self.disk.submit(op, offset, length, iovecs, done)
            else:
                done(status)

    def kill(self) -> None:
        """The server dies: held I/O and all later I/O fail with ENOLINK."""
        self.up = self.connected = False
        self.hold = False
        self.release(Status.ENOLINK)

    def disconnect(self, reason: str = "closed") -> None:
        """The client drops the connection (as NbdDevice does): held I/O fails with
        ENOLINK; the server stays up, so ``connect`` works again."""
        self.connected = False
        self.hold = False
        self.release(Status.ENOLINK)

    def restart(self) -> None:
        """The server is back; the path stays disconnected until ``connect``."""
        self.up = True

    async def connect(self, timeout: float = 5.0) -> None:
        self.connects += 1
        if not self.up:
            raise DeviceError(f"{self._name}: connection refused")
        self.connected = True

    @property
    def sectors_written(self) -> list[int]:
        return [s for op, s in self.log if op is Op.WRITE]


class Paths:
    """Named PathDevices over one shared disk; also the table's device resolver."""

    def __init__(self, *names: str, sectors: int = SIZE) -> None:
        self.disk = MemDevice("disk", sectors * SECTOR_SIZE)
        self.paths = {n: PathDevice(n, self.disk) for n in names}

    def add(self, name: str) -> PathDevice:
        self.paths[name] = PathDevice(name, self.disk)
        return self.paths[name]

    def __getitem__(self, name: str) -> PathDevice:
        return self.paths[name]

    def __call__(self, name: str) -> BlockDevice:
        try:
            return self.paths[name]
        except KeyError:
            raise DeviceError(f"no device named {name!r}") from None

    def kill(self, *names: str) -> None:
        for name in names or tuple(self.paths):
            self.paths[name].kill()


def mpath_line(start: int, length: int, *paths: str, features: str = "1 queue_if_no_path",
               selector: str = "round-robin") -> str:
    """One multipath table line: one group of ``paths`` with the given features."""
    devs = " ".join(paths)
    return f"{start} {length} multipath {features} 0 1 1 {selector} 0 {len(paths)} 0 {devs}"


def make_md(text: str, paths: Paths, name: str = "mp") -> MappedDevice:
    md = MappedDevice(name)
    md.create(parse_table(text, paths))
    return md


def mpaths(md: MappedDevice) -> list[MultipathTarget]:
    """The live multipath targets of ``md``."""
    assert md.live_table is not None
    return [t for t in md.live_table.targets if isinstance(t, MultipathTarget)]


def path_states(target: MultipathTarget) -> dict[str, str]:
    return {p.name: ("A" if p.active else "F") for p in target.paths}


def events(md: MappedDevice) -> list[str]:
    """Start recording ``md``'s table event reasons; returns the (live) list."""
    seen: list[str] = []

    def listener(_name: str, _nr: int, event: TableEvent) -> None:
        seen.append(event.reason)

    md.add_event_listener(listener)
    return seen


__all__ = [
    "SIZE",
    "HoldTarget",
    "PathDevice",
    "Paths",
    "Requests",
    "async_test",
    "events",
    "make_md",
    "mpath_line",
    "mpaths",
    "path_states",
    "settle",
]
