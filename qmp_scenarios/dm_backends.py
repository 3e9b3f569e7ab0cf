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
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from guests.kernel_dm import KernelDm as GuestDmsetup
from guests.machine import Guest

from .events import EventLog
from .result import Recorder

if TYPE_CHECKING:
    from .nbd_server import NbdServer


class Rig(Protocol):
    """What a dm backend uses of the rig (qmp_scenarios.rig.Rig, which builds the
    backend: importing it back would be a circle)."""

    guest: Guest | None
    rec: Recorder

    @property
    def events(self) -> EventLog: ...

    async def qmp(self, command: str, arguments: dict[str, Any] | None = None) -> Any: ...

    def socket_path(self, name: str) -> Path: ...

    def need_guest(self) -> Guest: ...


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
    async def state(self, name: str) -> str: ...
    async def message(self, name: str, sector: int, text: str) -> str: ...
    async def remove(self, name: str) -> None: ...
    async def lines(self, name: str) -> DmLines: ...
    async def attach(self, name: str, disk_id: str) -> str: ...
    def mark(self) -> int: ...
    async def event_mark(self, name: str) -> int: ...
    async def wait_event(self, name: str, reason: str, mark: int, timeout: float) -> None: ...
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

    async def state(self, name: str) -> str:
        ret = await self.rig.qmp("query-dm", {"name": name})
        return str(ret[0]["state"])

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

    async def event_mark(self, name: str) -> int:
        return self.rig.events.mark()

    async def wait_event(self, name: str, reason: str, mark: int, timeout: float) -> None:
        """DM_EVENT ``reason`` on ``name``; a reason without its parenthesised detail
        (``mirror log device lg failed``) also matches any detail (``(write)``,
        ``(flush)``): which I/O meets a dead device first is a race, the rule is not."""
        try:
            await self.rig.events.wait(
                "DM_EVENT", {"name": name, "reason": lambda r: _reason_matches(r, reason)},
                since=mark, timeout=timeout)
        except TimeoutError:
            seen = [ev.get("data", {}).get("reason") for ev in self.rig.events.events[mark:]
                    if ev.get("event") == "DM_EVENT"]
            raise TimeoutError(f"no DM_EVENT {reason!r} on {name} within {timeout}s "
                               f"(DM_EVENT reasons since mark: {seen})") from None

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
        self._numbers: dict[str, str] = {}  # path / dm: alias / lower -> major:minor
        self._aliases: dict[str, str] = {}  # dm:OTHER device name -> OTHER
        self._stacks: dict[str, Stack] = {}  # mapped devices split in the guest
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
        """A ``file:`` device becomes a virtio disk on that file, a ``dm:OTHER`` device
        is the guest's mapped device OTHER itself (tables name it by its number);
        others have no guest equivalent here."""
        if uri.startswith("dm:"):
            self._aliases[name] = uri[len("dm:"):]
            if uri[len("dm:"):] in self._created:
                await self._resolve_aliases(uri[len("dm:"):])
            return
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

    async def _resolve_aliases(self, dm: str) -> None:
        """Give every ``dm:DM`` device the number of mapped device ``dm``."""
        aliases = [a for a, target in self._aliases.items() if target == dm]
        if aliases:
            number = await self._dm_number(dm)
            for alias in aliases:
                self._numbers[alias] = number

    async def _dm_number(self, dm: str) -> str:
        out = await self._run("info", "-c", "--noheadings", "--separator", ":",
                              "-o", "major,minor", dm)
        return out[0].strip()

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
        stack = split_stack(name, table)
        if stack is None:
            await self._run("create", name, "--table", self._to_kernel(table))
        else:
            for lower, lower_table in stack.lowers.items():
                await self._run("create", lower, "--table", self._to_kernel(lower_table))
                self._numbers[lower] = await self._dm_number(lower)
            await self._run("create", name, "--table", self._to_kernel(stack.top))
            self._stacks[name] = stack
        self._created.append(name)
        await self._resolve_aliases(name)

    async def load(self, name: str, table: str) -> None:
        stack = self._stacks.get(name)
        if stack is None:
            await self._run("load", name, "--table", self._to_kernel(table))
            return
        new = split_stack(name, table)
        if new is None or list(new.lowers) != list(stack.lowers):
            raise RuntimeError(f"the kernel oracle cannot restack {name}: the new table's "
                               f"multipath lines are not grouped as the old ones")
        for lower, lower_table in new.lowers.items():
            if lower_table != stack.lowers[lower]:
                await self._run("load", lower, "--table", self._to_kernel(lower_table))
        if new.top != stack.top:
            await self._run("load", name, "--table", self._to_kernel(new.top))
        self._stacks[name] = new

    async def suspend(self, name: str, noflush: bool, timeout: float | None) -> None:
        """A stacked device: its multipath devices first (where its queued I/O waits),
        then the top unless it is only linear targets (which hold no I/O of their own:
        suspending them would only wait, with no path forever, for the I/O the
        multipath devices hold). An interrupted suspend of the top resumes them again,
        so the whole device is as before, as vudm's interrupted suspend leaves it."""
        stack = self._stacks.get(name)
        if stack is None:
            await self._suspend_one(name, noflush, timeout)
            return
        for lower in stack.lowers:
            await self._suspend_one(lower, noflush, timeout)
        if stack.top_holds_io:
            try:
                await self._suspend_one(name, noflush, timeout)
            except Exception:
                for lower in stack.lowers:
                    await self._run("resume", lower)
                raise

    async def _suspend_one(self, name: str, noflush: bool, timeout: float | None) -> None:
        """dmsetup suspend; with ``timeout``, SIGKILL after that many seconds: the
        kernel's suspend waits interruptibly (TASK_INTERRUPTIBLE in __dm_suspend) and an
        interrupted one is undone (queued I/O flushed back, presuspend undone), the
        kernel's counterpart of vudm's suspend timeout. (SIGINT would not do: the
        agent's commands run with SIGINT ignored, seen as a suspend that never ended.)"""
        args = ["suspend", *(["--noflush"] if noflush else []), name]
        if timeout is None:
            await self._run(*args)
            return
        guest = self.rig.need_guest()
        res = await guest.run(f"timeout -s KILL {max(1, round(timeout))} vudm-dm "
                              + shlex.join(args), timeout + 60)
        if res.exit_code != 0:
            raise RuntimeError(f"dmsetup suspend {name} interrupted after {timeout:g}s "
                               f"(exit {res.exit_code}): {res.stderr.strip()[-300:]}")

    async def resume(self, name: str) -> None:
        stack = self._stacks.get(name)
        for lower in stack.lowers if stack else ():
            await self._run("resume", lower)
        await self._run("resume", name)

    async def state(self, name: str) -> str:
        stack = self._stacks.get(name)
        for dm in [*(stack.lowers if stack else ()), name]:
            out = await self._run("info", dm)
            for line in out:
                if line.startswith("State:") and "SUSPENDED" in line:
                    return "SUSPENDED"
        return "ACTIVE"

    async def message(self, name: str, sector: int, text: str) -> str:
        stack = self._stacks.get(name)
        target = stack.lower_at(sector) if stack else None
        out = await self._run("message", target or name, str(sector),
                              *self._to_kernel(text).split())
        return "\n".join(out)

    async def remove(self, name: str) -> None:
        await self._run("remove", name)
        for lower in self._stacks.pop(name).lowers if name in self._stacks else ():
            await self._run("remove", lower)

    async def _lines_of(self, name: str) -> DmLines:
        table = await self._run("table", name)
        status = await self._run("status", name)
        return DmLines(table, status, await self._event_nr(name))

    async def _event_nr(self, name: str) -> int:
        events = await self._run("info", "-c", "--noheadings", "-o", "events", name)
        return int(events[0].strip()) if events else 0

    async def lines(self, name: str) -> DmLines:
        """A stacked device is shown as the table the scenario wrote: each line onto a
        multipath device in the guest becomes that device's line at the line's place;
        the event number is the sum of the top's and its multipath devices'."""
        top = await self._lines_of(name)
        stack = self._stacks.get(name)
        if stack is None:
            return top
        lowers = {lower: await self._lines_of(lower) for lower in stack.lowers}
        return unstack(top, lowers)

    async def attach(self, name: str, disk_id: str) -> str:
        minor = await self._run("info", "-c", "--noheadings", "-o", "minor", name)
        return f"/dev/dm-{minor[0].strip()}"

    def mark(self) -> int:
        return 0

    async def event_mark(self, name: str) -> int:
        return (await self.lines(name)).event_nr

    async def wait_event(self, name: str, reason: str, mark: int, timeout: float) -> None:
        """The kernel's table event for vudm's DM_EVENT ``reason``: wait (``dmsetup
        wait``, no timer) until the status shows what the reason says (a mirror leg or
        log not A), or for another reason until the event number passed ``mark``."""
        deadline = self.rig.rec.now() + timeout
        while True:
            info = await self.lines(name)
            if reason_seen(reason, info, mark):
                return
            left = deadline - self.rig.rec.now()
            if left <= 0:
                raise TimeoutError(f"kernel dm: no {reason!r} on {name}")
            await self._run("wait", name, str(info.event_nr), timeout=left)

    def path_disks(self) -> list[str]:
        """The guest's names of the path disks (vdb, ...)."""
        return [dev.rsplit("/", 1)[-1] for dev in self._devs.values()]

    async def _probe(self, path: str, timeout: float) -> bool:
        """One direct 4 KiB read of the path's disk (multipathd's directio checker)."""
        res = await self.rig.need_guest().run(
            f"dd if={self._devs[path]} of=/dev/null bs=4096 count=1 iflag=direct "
            f"2>/dev/null", timeout)
        return res.exit_code == 0

    def _holder_of(self, name: str, path: str) -> str:
        """The guest dm device whose table names ``path`` (a stacked device's lower)."""
        stack = self._stacks.get(name)
        if stack is not None:
            for lower, table in stack.lowers.items():
                if path in table.split():
                    return lower
        return name

    async def wait_path(self, name: str, path: str, *, failed: bool, mark: int,
                        timeout: float) -> float | None:
        """Failed: the kernel's dm-mpath marks the path F on its own when an I/O meets
        the error; if none did yet, the rig's checker (multipathd's part) probes the
        path's disk and, when the read fails, sends ``fail_path``, as vudm's checker
        would; otherwise wait on the event number (``dmsetup wait``), not on a timer.
        Reinstated: nobody reinstates in the guest (no multipathd): probe the path's
        disk until it reads again (QEMU's NBD client reconnects on a new request), then
        ``reinstate_path``, as multipathd's checker would."""
        guest = self.rig.need_guest()
        holder = self._holder_of(name, path)
        if not failed:
            dev = self._devs[path]
            res = await guest.run(
                f"i=0; until dd if={dev} of=/dev/null bs=4096 count=1 iflag=direct "
                f"2>/dev/null; do i=$((i+1)); [ $i -gt {int(timeout * 10)} ] && exit 1; "
                f"usleep 100000; done", timeout + 10)
            if res.exit_code != 0:
                raise RuntimeError(f"path {path} did not answer within {timeout}s")
            await self._run("message", holder, "0", "reinstate_path",
                            self._to_kernel(path))
            return None
        deadline = self.rig.rec.now() + timeout
        while True:
            info = await self.lines(name)
            if _path_state(info.status, self._numbers.get(path, path), path) == "F":
                return None
            if not await self._probe(path, 5.0):
                # no I/O met the dead path yet: multipathd's checker would fail it now
                await self._run("message", holder, "0", "fail_path", self._to_kernel(path))
                continue
            left = deadline - self.rig.rec.now()
            if left <= 0:
                raise TimeoutError(f"kernel dm-mpath did not fail path {path} of {name}")
            # blocks in the guest until the event number passes what we saw
            await self._run("wait", holder, str(await self._event_nr(holder)),
                            timeout=left)


@dataclass
class Stack:
    """A table the kernel refuses as one device (dm-mpath must be alone in a table),
    as the guest builds it instead: each distinct multipath line (same arguments) is a
    mapped device of its own, ``NAME.mpN``, covering sectors 0 to its last line's end
    (a path sees the top's sector numbers, as it would in one table), and the top's
    line becomes ``START LEN linear NAME.mpN START``. The other lines stay in the top."""

    top: str
    lowers: dict[str, str]
    """Lower device name -> its table (one multipath line)."""
    starts: list[tuple[int, int, str | None]]
    """Each top line's start, length and lower (None: a line of the top's own)."""

    @property
    def top_holds_io(self) -> bool:
        """A top of linear lines only holds no I/O of its own (see KernelDm.suspend)."""
        return any(t.split()[2] != "linear" for t in self.top.splitlines())

    def lower_at(self, sector: int) -> str | None:
        for start, length, lower in self.starts:
            if start <= sector < start + length:
                return lower
        return None


def split_stack(name: str, table: str) -> Stack | None:
    """The stacked form of ``table`` if the kernel needs one (a multipath line that is
    not alone), else None."""
    lines = [ln.strip() for ln in table.splitlines() if ln.strip()]
    if len(lines) < 2 or not any(ln.split()[2] == "multipath" for ln in lines):
        return None
    groups: dict[str, str] = {}  # multipath arguments -> lower name
    ends: dict[str, int] = {}
    top: list[str] = []
    starts: list[tuple[int, int, str | None]] = []
    for ln in lines:
        words = ln.split()
        start, length = int(words[0]), int(words[1])
        if words[2] != "multipath":
            top.append(ln)
            starts.append((start, length, None))
            continue
        args = " ".join(words[3:])
        lower = groups.setdefault(args, f"{name}.mp{len(groups)}")
        ends[lower] = max(ends.get(lower, 0), start + length)
        top.append(f"{start} {length} linear {lower} {start}")
        starts.append((start, length, lower))
    lowers = {lower: f"0 {ends[lower]} multipath {args}" for args, lower in groups.items()}
    return Stack("\n".join(top), lowers, starts)


def unstack(top: DmLines, lowers: dict[str, DmLines]) -> DmLines:
    """The top's lines with each line onto a lower replaced by the lower's own line
    (its start and length put back), events summed."""
    table, status = [], []
    for i, line in enumerate(top.table):
        words = line.split()
        stat = top.status[i] if i < len(top.status) else ""
        if len(words) == 5 and words[2] == "linear" and words[3] in lowers:
            low = lowers[words[3]]
            line = " ".join(words[:2] + low.table[0].split()[2:]) if low.table else line
            stat = " ".join(words[:2] + low.status[0].split()[2:]) if low.status else stat
        table.append(line)
        status.append(stat)
    return DmLines(table, status, top.event_nr + sum(low.event_nr for low in lowers.values()))


def _reason_matches(seen: object, wanted: str) -> bool:
    return isinstance(seen, str) and (seen == wanted or seen.startswith(wanted + " ("))


def reason_seen(reason: str, info: DmLines, mark: int) -> bool:
    """Whether the kernel's status shows vudm's event ``reason``: ``mirror leg X
    failed ...`` (leg X's health letter not A) or ``mirror log device X failed ...``
    (the disk log's letter not A); any other reason: an event past ``mark``."""
    words = reason.split()
    for line in info.status:
        status = line.split()
        if len(status) < 4 or status[2] != "mirror":
            continue
        legs = int(status[3])
        names = status[4:4 + legs]
        health = status[6 + legs]
        log = status[7 + legs:]
        if reason.startswith("mirror leg ") and words[2] in names:
            return health[names.index(words[2])] != "A"
        if reason.startswith("mirror log device ") and words[3] in log:
            return log[-1] != "A"
    return info.event_nr > mark


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
