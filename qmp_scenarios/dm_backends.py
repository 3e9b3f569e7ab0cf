"""Who answers a scenario's dm steps: vudm over QMP, or the guest kernel's own dm.

Steps (create, load, suspend [noflush], resume, message, table, status, remove, and the
waits for a path to fail or come back) call ``rig.dm``, never QMP directly, so a scenario
reads the same whichever oracle runs it (../shared/DESIGN.md, "The kernel as oracle"):

- :class:`VudmDm`: the vudm daemon's QMP commands and events; the mapped device reaches
  the guest as a vhost-user-blk export.
- :class:`KernelDm`: dmsetup in the guest (guests/kernel_dm.py). Each NBD path becomes a
  virtio disk on QEMU's own NBD client to the same server (``reconnect-delay=0``, so a
  killed server fails the path's I/O at once, as it does in vudm), tables name those
  disks by ``major:minor``, fio runs on the mapped device itself (``/dev/dm-N``, the
  node behind ``/dev/mapper/NAME``), and the rig plays multipathd: after a path's server
  is back it probes the disk until it answers, then sends ``reinstate_path``.

Both record the table and status lines they see (path names as the scenario wrote
them), for ``vudm scenario diff``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from guests.kernel_dm import KernelDm as GuestDmsetup
from guests.machine import Guest

if TYPE_CHECKING:
    from .nbd_server import NbdServer
    from .rig import Rig


@dataclass
class DmLines:
    """What one backend showed of a mapped device: final table and status lines and the
    event number (table events: path failed, reinstated, ...)."""

    table: list[str] = field(default_factory=list)
    status: list[str] = field(default_factory=list)
    event_nr: int = 0


class DmBackend(Protocol):
    name: str

    async def add_path(self, name: str, srv: NbdServer) -> None: ...
    async def add_device(self, name: str, uri: str) -> None: ...
    async def guest_booted(self, guest: Guest) -> None: ...
    async def create(self, name: str, table: str) -> None: ...
    async def load(self, name: str, table: str) -> None: ...
    async def suspend(self, name: str, noflush: bool, timeout: float | None) -> None: ...
    async def resume(self, name: str) -> None: ...
    async def message(self, name: str, sector: int, text: str) -> str: ...
    async def remove(self, name: str) -> None: ...
    async def lines(self, name: str) -> DmLines: ...
    async def attach(self, name: str, disk_id: str) -> str: ...
    def mark(self) -> int: ...
    def path_disks(self) -> list[str]: ...
    async def wait_path(self, name: str, path: str, *, failed: bool, mark: int,
                        timeout: float) -> float | None: ...

    @property
    def created(self) -> list[str]: ...


def dm_lines_of(entry: dict[str, Any]) -> DmLines:
    return DmLines([ln for ln in str(entry.get("table") or "").splitlines() if ln],
                   [ln for ln in str(entry.get("status") or "").splitlines() if ln],
                   int(entry.get("event-nr", 0)))


class VudmDm:
    """The dm steps as vudm QMP commands (what scenarios always did)."""

    name = "vudm"

    def __init__(self, rig: Rig) -> None:
        self.rig = rig
        self._created: list[str] = []

    @property
    def created(self) -> list[str]:
        return self._created

    async def add_path(self, name: str, srv: NbdServer) -> None:
        await self.rig.qmp("dev-add", {"name": name, "uri": srv.uri})

    async def add_device(self, name: str, uri: str) -> None:
        await self.rig.qmp("dev-add", {"name": name, "uri": uri})

    async def guest_booted(self, guest: Guest) -> None:
        return None

    async def create(self, name: str, table: str) -> None:
        await self.rig.qmp("dm-create", {"name": name, "table": table})
        self._created.append(name)

    async def load(self, name: str, table: str) -> None:
        await self.rig.qmp("dm-load", {"name": name, "table": table})

    async def suspend(self, name: str, noflush: bool, timeout: float | None) -> None:
        args: dict[str, Any] = {"name": name, "noflush": noflush}
        if timeout is not None:
            args["timeout"] = timeout
        await self.rig.qmp("dm-suspend", args)

    async def resume(self, name: str) -> None:
        await self.rig.qmp("dm-resume", {"name": name})

    async def message(self, name: str, sector: int, text: str) -> str:
        ret = await self.rig.qmp("dm-message", {"name": name, "sector": sector,
                                                "message": text})
        return str(ret.get("reply", "")) if isinstance(ret, dict) else ""

    async def remove(self, name: str) -> None:
        await self.rig.qmp("dm-remove", {"name": name})

    async def lines(self, name: str) -> DmLines:
        ret = await self.rig.qmp("query-dm", {"name": name})
        return dm_lines_of(ret[0])

    async def attach(self, name: str, disk_id: str) -> str:
        rig = self.rig
        sock = rig.socket_path(f"{disk_id}.sock")
        mark = rig.events.mark()
        await rig.qmp("export-add", {"id": disk_id, "dm": name, "socket": str(sock),
                                     "num-queues": 1, "writable": True})
        dev = await rig.need_guest().hotplug_vhost_user_blk(disk_id, sock, num_queues=1,
                                                            reconnect=1)
        await rig.events.wait("EXPORT_CONNECTED", {"id": disk_id}, since=mark)
        return dev

    def mark(self) -> int:
        return self.rig.events.mark()

    def path_disks(self) -> list[str]:
        return []  # the guest never sees vudm's paths

    async def wait_path(self, name: str, path: str, *, failed: bool, mark: int,
                        timeout: float) -> float | None:
        """Wait for PATH_FAILED / PATH_REINSTATED; return the daemon's event time."""
        event = "PATH_FAILED" if failed else "PATH_REINSTATED"
        ev = await self.rig.events.wait(event, {"name": name, "dev": path}, since=mark,
                                        timeout=timeout)
        stamp = ev.get("timestamp", {})
        return float(stamp.get("seconds", 0)) + float(stamp.get("microseconds", 0)) / 1e6


class KernelDm:
    """The dm steps as dmsetup commands against the guest kernel's device-mapper."""

    name = "kernel"

    def __init__(self, rig: Rig) -> None:
        self.rig = rig
        self._blockdevs: dict[str, dict[str, object]] = {}  # name -> QEMU blockdev
        self._devs: dict[str, str] = {}  # path name -> guest /dev/vdX
        self._numbers: dict[str, str] = {}  # path name -> major:minor
        self._deferred: list[tuple[str, str]] = []  # creates before the guest booted
        self._created: list[str] = []
        self._dmsetup: GuestDmsetup | None = None

    @property
    def created(self) -> list[str]:
        return self._created

    async def add_path(self, name: str, srv: NbdServer) -> None:
        await self._add(name, {
            "driver": "nbd", "server": {"type": "unix", "path": str(srv.socket)},
            "export": srv.export, "reconnect-delay": 0})

    async def add_device(self, name: str, uri: str) -> None:
        """A ``file:`` device becomes a virtio disk on that file; others have no guest
        equivalent here."""
        if not uri.startswith("file:") or "?" in uri:
            raise RuntimeError(f"the kernel oracle has no guest disk for {uri!r}")
        await self._add(name, {"driver": "file", "filename": uri[len("file:"):]})

    async def _add(self, name: str, blockdev: dict[str, object]) -> None:
        self._blockdevs[name] = blockdev
        if self.rig.guest is not None and self._dmsetup is not None:
            await self._plug(name)

    async def guest_booted(self, guest: Guest) -> None:
        self._dmsetup = GuestDmsetup(guest)
        for name in self._blockdevs:
            await self._plug(name)
        deferred, self._deferred = self._deferred, []
        for name, table in deferred:
            await self.create(name, table)

    async def _plug(self, name: str) -> None:
        guest = self.rig.need_guest()
        dev = await guest.hotplug_virtio_blk(f"path-{name}", self._blockdevs[name])
        self._devs[name] = dev
        assert self._dmsetup is not None
        self._numbers[name] = await self._dmsetup.dev_number(dev)

    def _to_kernel(self, text: str) -> str:
        return _swap_words(text, self._numbers)

    def _from_kernel(self, text: str) -> str:
        return _swap_words(text, {v: k for k, v in self._numbers.items()})

    async def _run(self, *args: str, timeout: float = 120.0) -> list[str]:
        if self._dmsetup is None:
            raise RuntimeError("the kernel oracle needs the guest booted for this dm step")
        reply = await self._dmsetup.run(list(args), timeout)
        if not reply.ok:
            raise RuntimeError(f"dmsetup {' '.join(args[:2])}: {reply.error[-300:]}")
        return [self._from_kernel(ln).rstrip() for ln in reply.lines]

    async def create(self, name: str, table: str) -> None:
        if self._dmsetup is None:
            self._deferred.append((name, table))  # created once the guest has the paths
            return
        await self._run("create", name, "--table", self._to_kernel(table))
        self._created.append(name)

    async def load(self, name: str, table: str) -> None:
        await self._run("load", name, "--table", self._to_kernel(table))

    async def suspend(self, name: str, noflush: bool, timeout: float | None) -> None:
        await self._run("suspend", *(["--noflush"] if noflush else []), name,
                        timeout=timeout or 120.0)

    async def resume(self, name: str) -> None:
        await self._run("resume", name)

    async def message(self, name: str, sector: int, text: str) -> str:
        out = await self._run("message", name, str(sector), *self._to_kernel(text).split())
        return "\n".join(out)

    async def remove(self, name: str) -> None:
        await self._run("remove", name)

    async def lines(self, name: str) -> DmLines:
        table = await self._run("table", name)
        status = await self._run("status", name)
        events = await self._run("info", "-c", "--noheadings", "-o", "events", name)
        return DmLines(table, status, int(events[0].strip()) if events else 0)

    async def attach(self, name: str, disk_id: str) -> str:
        minor = await self._run("info", "-c", "--noheadings", "-o", "minor", name)
        return f"/dev/dm-{minor[0].strip()}"

    def mark(self) -> int:
        return 0

    def path_disks(self) -> list[str]:
        """The guest's names of the path disks (vdb, ...)."""
        return [dev.rsplit("/", 1)[-1] for dev in self._devs.values()]

    async def wait_path(self, name: str, path: str, *, failed: bool, mark: int,
                        timeout: float) -> float | None:
        """Failed: the kernel's dm-mpath marks the path F on its own (an I/O error on
        it); wait on the device's event number (``dmsetup wait``), not on a timer.
        Reinstated: nobody reinstates in the guest (no multipathd): probe the path's
        disk until it reads again (QEMU's NBD client reconnects on a new request), then
        ``reinstate_path``, as multipathd's checker would."""
        guest = self.rig.need_guest()
        if not failed:
            dev = self._devs[path]
            res = await guest.run(
                f"i=0; until dd if={dev} of=/dev/null bs=4096 count=1 iflag=direct "
                f"2>/dev/null; do i=$((i+1)); [ $i -gt {int(timeout * 10)} ] && exit 1; "
                f"usleep 100000; done", timeout + 10)
            if res.exit_code != 0:
                raise RuntimeError(f"path {path} did not answer within {timeout}s")
            await self.message(name, 0, f"reinstate_path {path}")
            return None
        deadline = self.rig.rec.now() + timeout
        while True:
            info = await self.lines(name)
            if _path_state(info.status, self._numbers.get(path, path), path) == "F":
                return None
            left = deadline - self.rig.rec.now()
            if left <= 0:
                raise TimeoutError(f"kernel dm-mpath did not fail path {path} of {name}")
            # blocks in the guest until the event number passes what we saw
            await self._run("wait", name, str(info.event_nr), timeout=left)


def _swap_words(text: str, mapping: dict[str, str]) -> str:
    if not mapping:
        return text
    pattern = re.compile(r"(?<![^\s])(" + "|".join(map(re.escape, mapping)) + r")(?![^\s])")
    return pattern.sub(lambda m: mapping[m.group(1)], text)


def _path_state(status: list[str], *names: str) -> str | None:
    """A path's A/F in multipath status lines (the word after the path's name)."""
    for line in status:
        words = line.split()
        for i, w in enumerate(words[:-1]):
            if w in names:
                return words[i + 1]
    return None


def make_backend(oracle: str, rig: Rig) -> DmBackend:
    if oracle == "vudm":
        return VudmDm(rig)
    if oracle == "kernel":
        return KernelDm(rig)
    raise ValueError(f"unknown oracle {oracle!r} (vudm or kernel)")
