"""One QEMU guest: boot, agent, vhost-user-blk hot(un)plug, the guest's own evidence.

The host listens on the QMP and agent sockets and QEMU connects to them, so nothing
waits for a socket file to appear. Every wait has a timeout; every failure raises
GuestError with the tail of the guest console and of QEMU's own log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import shutil
import tempfile
import time
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TypeVar

from qemu.qmp import ExecuteError, QMPClient

from guests.errors import GuestError

from .agent import LINE_LIMIT, AgentClient, AgentJob, AgentResult, DiskEvent
from .console import diagnostics
from .disk_names import LIST_DISKS, disk_name, find_disk_in_listing
from .image import GuestImage, find_image
from .lifetime import die_with_parent
from .qemu_cmd import (
    MAX_SLOTS,
    MachineConfig,
    VhostUserDisk,
    choose_accel,
    qemu_argv,
    root_port_id,
    root_port_pci_address,
    vhost_user_blk_device,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

# Lines of dmesg that mean the guest block layer saw an I/O error.
IO_ERROR_PATTERNS = re.compile(
    r"I/O error|Buffer I/O error|critical medium error|blk_update_request"
    r"|print_req_error|lost (?:async )?page write|end_request: I/O error",
    re.IGNORECASE,
)
# sun_path is 108 bytes including the NUL.
UNIX_PATH_MAX = 107


@dataclass(frozen=True)
class BlockNodeDisk:
    """A virtio-blk disk on a QEMU block node (blockdev-add), not on a vhost-user socket."""

    disk_id: str
    node_name: str


class Guest:
    """A QEMU guest booted from the vudm image; use as ``async with Guest(...) as g``."""

    def __init__(
        self,
        workdir: Path,
        *,
        image: GuestImage | None = None,
        memory_mb: int = 512,
        vcpus: int = 1,
        boot_disks: Sequence[VhostUserDisk] = (),
        hotplug_slots: int = 8,
        accel: str | None = None,
        boot_timeout: float = 180.0,
    ) -> None:
        if len(boot_disks) > hotplug_slots or hotplug_slots > MAX_SLOTS:
            raise GuestError(f"at most {hotplug_slots} (<= {MAX_SLOTS}) disks per guest")
        self.workdir = Path(workdir)
        self.image = image
        self.memory_mb = memory_mb
        self.vcpus = vcpus
        self.hotplug_slots = hotplug_slots
        self.accel = accel
        self.boot_timeout = boot_timeout
        self.console_log = self.workdir / "console.log"
        self.qemu_log = self.workdir / "qemu.log"
        self.boot_seconds: float | None = None
        self._boot_disks = tuple(boot_disks)
        # disk_id -> (root port slot, disk, guest device path once known)
        self._disks: dict[str, tuple[int, VhostUserDisk | BlockNodeDisk, str | None]] = {}
        self._socket_dir: Path | None = None
        self._private_socket_dir = False
        self._proc: asyncio.subprocess.Process | None = None
        self._qmp: QMPClient | None = None
        self._agent: AgentClient | None = None

    # -- lifecycle ---------------------------------------------------------------

    async def __aenter__(self) -> Guest:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Boot the guest and return once its agent answers."""
        if self._proc is not None:
            raise GuestError("guest already started")
        image = self.image or find_image()
        self.workdir.mkdir(parents=True, exist_ok=True)
        sockets = self._make_socket_dir()
        qmp_socket, agent_socket = sockets / "qmp.sock", sockets / "agent.sock"
        config = MachineConfig(
            image=image,
            memory_mb=self.memory_mb,
            vcpus=self.vcpus,
            accel=self.accel or choose_accel(),
            hotplug_slots=self.hotplug_slots,
            boot_disks=tuple(enumerate(self._boot_disks)),
        )
        for slot, disk in config.boot_disks:
            self._disks[disk.disk_id] = (slot, disk, None)
        argv = qemu_argv(
            config, qmp_socket=qmp_socket, agent_socket=agent_socket, console_log=self.console_log
        )
        (self.workdir / "qemu.cmdline").write_text(" ".join(argv) + "\n")
        started = time.monotonic()
        deadline = started + self.boot_timeout
        try:
            self._qmp = QMPClient(f"guest-{self.workdir.name}")
            await self._qmp.start_server(str(qmp_socket))
            connected: asyncio.Future[tuple[asyncio.StreamReader, asyncio.StreamWriter]]
            connected = asyncio.get_running_loop().create_future()

            def on_agent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                if not connected.done():
                    connected.set_result((reader, writer))

            server = await asyncio.start_unix_server(on_agent, agent_socket, limit=LINE_LIMIT)
            try:
                with self.qemu_log.open("ab") as qemu_log:
                    self._proc = await asyncio.create_subprocess_exec(
                        *argv,
                        stdin=asyncio.subprocess.DEVNULL,
                        stdout=qemu_log,
                        stderr=qemu_log,
                        start_new_session=True,
                        preexec_fn=die_with_parent(),
                    )
                log.info("guest %s: qemu pid %d (%s)", self.workdir, self._proc.pid, config.accel)
                await self._until(self._qmp.accept(), "QEMU's QMP connection", deadline)
                reader, writer = await self._until(connected, "QEMU's agent connection", deadline)
            finally:
                server.close()
            self._agent = AgentClient(reader, writer)
            kernel = await self._until(
                self._agent.wait_ready(self._remaining(deadline)), "the guest agent", deadline
            )
            await self._until(self._agent.ping(30.0), "the guest agent's PONG", deadline)
        except BaseException:
            await self._teardown(kill=True)
            raise
        self.boot_seconds = time.monotonic() - started
        log.info("guest %s: agent ready after %.1f s (kernel %s)", self.workdir, self.boot_seconds,
                 kernel)

    async def stop(self, timeout: float = 30.0) -> None:
        """Quit QEMU through QMP; SIGKILL it if it has not exited within ``timeout``."""
        await self._teardown(kill=False, timeout=timeout)

    @property
    def qmp(self) -> QMPClient:
        """The QMP client of this guest's QEMU (connected while the guest runs)."""
        if self._qmp is None or self._proc is None:
            raise GuestError("guest is not running")
        return self._qmp

    @property
    def pid(self) -> int:
        """QEMU's process id."""
        if self._proc is None:
            raise GuestError("guest is not running")
        return self._proc.pid

    # -- commands ----------------------------------------------------------------

    async def run(self, command: str, timeout: float = 60.0) -> AgentResult:
        """Run a shell command in the guest (busybox sh) and return its result."""
        job = await self.submit(command)
        return await self.wait_job(job, timeout)

    async def submit(self, command: str) -> AgentJob:
        """Start a shell command in the guest in the background."""
        return await self._running_agent().submit(command)

    async def wait_job(self, job: AgentJob, timeout: float) -> AgentResult:
        """Wait for a submitted command; GuestError (with the console tail) if it fails."""
        try:
            return await job.wait(timeout)
        except GuestError as exc:
            raise GuestError(f"{exc}{self._diagnostics()}") from exc

    # -- disks -------------------------------------------------------------------

    async def hotplug_vhost_user_blk(
        self,
        disk_id: str,
        socket_path: Path | str,
        num_queues: int = 1,
        reconnect: int | None = None,
        serial: str | None = None,
        timeout: float = 60.0,
    ) -> str:
        """Hotplug a vhost-user-blk disk served at ``socket_path``; return its /dev path.

        Returns once the guest has the disk with I/O scheduler "none" (the guest's mdev
        hook reports it through the agent). ``serial``, if given, must be what the
        backend reports as the disk's id (vhost-user-blk has no QEMU-side serial).
        """
        if disk_id in self._disks:
            raise GuestError(f"disk {disk_id!r} is already plugged")
        if len(str(socket_path)) > UNIX_PATH_MAX:
            raise GuestError(f"socket path longer than {UNIX_PATH_MAX} bytes: {socket_path}")
        slot = self._free_slot()
        disk = VhostUserDisk(disk_id, Path(socket_path), num_queues, reconnect)
        socket_opts: dict[str, object] = {
            "addr": {"type": "unix", "data": {"path": str(disk.socket_path)}},
            "server": False,
        }
        if reconnect is not None:
            socket_opts["reconnect"] = reconnect
        deadline = time.monotonic() + timeout
        agent = self._running_agent()
        with agent.disk_events() as events:
            await self._qmp_execute(
                "chardev-add",
                {"id": disk.chardev_id, "backend": {"type": "socket", "data": socket_opts}},
                deadline,
            )
            try:
                await self._qmp_execute("device_add", vhost_user_blk_device(disk, slot), deadline)
            except GuestError:
                with contextlib.suppress(GuestError):
                    await self._qmp_execute("chardev-remove", {"id": disk.chardev_id}, deadline)
                raise
            self._disks[disk_id] = (slot, disk, None)
            dev = await self._disk_appears(events, disk_id, slot, deadline, timeout)
        self._disks[disk_id] = (slot, disk, dev)
        log.info("guest %s: disk %s is %s", self.workdir, disk_id, dev)
        if serial is not None:
            await self._check_serial(dev, serial, deadline)
        return dev

    def _free_slot(self) -> int:
        """The first hotplug root port no plugged disk holds."""
        used = {slot for slot, _, _ in self._disks.values()}
        slot = next((s for s in range(self.hotplug_slots) if s not in used), None)
        if slot is None:
            raise GuestError(f"all {self.hotplug_slots} hotplug slots are in use")
        return slot

    async def _disk_appears(self, events: asyncio.Queue[DiskEvent], disk_id: str, slot: int,
                            deadline: float, timeout: float) -> str:
        """Wait for the guest's own "add" event of the disk in hotplug ``slot``; its /dev path."""
        address = root_port_pci_address(slot)
        try:
            async with asyncio.timeout(self._remaining(deadline)):
                while True:
                    event = await events.get()
                    if event.action == "add" and f"/{address}/" in event.sysfs_path:
                        return f"/dev/{event.disk}"
        except TimeoutError:
            raise GuestError(
                f"guest did not show disk {disk_id} (slot {address}) within {timeout:.0f} s"
                f"{self._diagnostics()}"
            ) from None

    async def hotplug_virtio_blk(
        self, disk_id: str, blockdev: dict[str, object], timeout: float = 60.0
    ) -> str:
        """Hotplug a virtio-blk disk on a QEMU block node; return its /dev path.

        ``blockdev`` is blockdev-add's arguments without ``node-name`` (e.g. ``{"driver":
        "nbd", "server": {...}, "export": "disk", "reconnect-delay": 0}``): QEMU's own
        block layer serves the disk, which is how the kernel oracle gives the guest's dm
        the same NBD paths vudm has. Returns once the guest has the disk.
        """
        if disk_id in self._disks:
            raise GuestError(f"disk {disk_id!r} is already plugged")
        slot = self._free_slot()
        node = f"blk-{disk_id}"
        deadline = time.monotonic() + timeout
        agent = self._running_agent()
        with agent.disk_events() as events:
            await self._qmp_execute("blockdev-add", {**blockdev, "node-name": node}, deadline)
            device: dict[str, object] = {"driver": "virtio-blk-pci", "id": disk_id, "drive": node,
                      "bus": root_port_id(slot)}
            try:
                await self._qmp_execute("device_add", device, deadline)
            except GuestError:
                with contextlib.suppress(GuestError):
                    await self._qmp_execute("blockdev-del", {"node-name": node}, deadline)
                raise
            self._disks[disk_id] = (slot, BlockNodeDisk(disk_id, node), None)
            dev = await self._disk_appears(events, disk_id, slot, deadline, timeout)
        self._disks[disk_id] = (slot, BlockNodeDisk(disk_id, node), dev)
        log.info("guest %s: disk %s (%s) is %s", self.workdir, disk_id, blockdev.get("driver"),
                 dev)
        return dev

    async def unplug(self, disk_id: str, timeout: float = 60.0) -> None:
        """device_del a disk, wait for QEMU's DEVICE_DELETED, then remove its chardev."""
        if disk_id not in self._disks:
            raise GuestError(f"no disk {disk_id!r} plugged")
        _, disk, _ = self._disks[disk_id]
        deadline = time.monotonic() + timeout
        with self.qmp.listener("DEVICE_DELETED") as listener:
            await self._qmp_execute("device_del", {"id": disk_id}, deadline)
            try:
                async with asyncio.timeout(self._remaining(deadline)):
                    async for event in listener:
                        data = event.get("data", {})
                        if isinstance(data, dict) and data.get("device") == disk_id:
                            break
            except TimeoutError:
                raise GuestError(
                    f"no DEVICE_DELETED for {disk_id} within {timeout:.0f} s "
                    f"(did the guest release the disk?){self._diagnostics()}"
                ) from None
        del self._disks[disk_id]
        if isinstance(disk, BlockNodeDisk):
            await self._qmp_execute("blockdev-del", {"node-name": disk.node_name}, deadline)
        else:
            await self._qmp_execute("chardev-remove", {"id": disk.chardev_id}, deadline)
        log.info("guest %s: disk %s unplugged", self.workdir, disk_id)

    def plugged_disks(self) -> list[str]:
        """Ids of the disks plugged now (boot disks and hotplugged ones)."""
        return list(self._disks)

    async def disk_path(self, disk_id: str, timeout: float = 30.0) -> str:
        """The guest's /dev path of a plugged disk (boot-time disks are looked up)."""
        if disk_id not in self._disks:
            raise GuestError(f"no disk {disk_id!r} plugged")
        slot, disk, dev = self._disks[disk_id]
        if dev is None:
            listing = (await self.run(LIST_DISKS, timeout)).check("listing disks").output
            name = find_disk_in_listing(listing, root_port_pci_address(slot))
            if name is None:
                raise GuestError(f"guest has no disk in slot of {disk_id}:\n{listing}")
            dev = f"/dev/{name}"
            self._disks[disk_id] = (slot, disk, dev)
        return dev

    async def disk_size(self, dev: str, timeout: float = 30.0) -> int:
        """Size in bytes of a guest disk, as its kernel sees it (sysfs, 512-byte units)."""
        name = disk_name(dev)
        result = (await self.run(f"cat /sys/block/{name}/size", timeout)).check(f"size of {dev}")
        return int(result.output.strip()) * 512

    async def kernel_io_errors(self, timeout: float = 30.0) -> list[str]:
        """Lines of the guest kernel log that report I/O errors (empty: none seen)."""
        result = (await self.run("dmesg", timeout)).check("dmesg")
        return [line for line in result.output.splitlines() if IO_ERROR_PATTERNS.search(line)]

    def console_tail(self, lines: int = 30) -> str:
        """The end of the guest's serial console log."""
        return diagnostics(self.console_log, self.qemu_log, lines)

    # -- internals ---------------------------------------------------------------

    def _running_agent(self) -> AgentClient:
        if self._agent is None:
            raise GuestError("guest is not running")
        return self._agent

    def _diagnostics(self) -> str:
        return diagnostics(self.console_log, self.qemu_log)

    @staticmethod
    def _remaining(deadline: float) -> float:
        return max(0.0, deadline - time.monotonic())

    def _make_socket_dir(self) -> Path:
        """The workdir itself, or a short private dir when its paths would be too long."""
        if len(str(self.workdir / "agent.sock")) <= UNIX_PATH_MAX:
            self._socket_dir = self.workdir
        else:
            self._socket_dir = Path(tempfile.mkdtemp(prefix="vudm-guest-"))
            self._private_socket_dir = True
            link = self.workdir / "sockets"
            link.unlink(missing_ok=True)
            link.symlink_to(self._socket_dir)
        return self._socket_dir

    async def _until(self, awaitable: Awaitable[T], what: str, deadline: float) -> T:
        """Await ``awaitable`` unless QEMU exits first or the deadline passes."""
        assert self._proc is not None
        task = asyncio.ensure_future(awaitable)
        exited = asyncio.ensure_future(self._proc.wait())
        try:
            done, _ = await asyncio.wait(
                {task, exited}, timeout=self._remaining(deadline),
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            exited.cancel()
        if task in done:
            return task.result()
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
        if exited in done:
            message = f"QEMU exited with code {self._proc.returncode} while waiting for {what}"
        else:
            message = f"timed out waiting for {what}"
        raise GuestError(f"{message}{self._diagnostics()}")

    async def _qmp_execute(
        self, command: str, arguments: dict[str, object], deadline: float
    ) -> object:
        try:
            async with asyncio.timeout(self._remaining(deadline)):
                return await self.qmp.execute(command, arguments)
        except ExecuteError as exc:
            raise GuestError(f"QMP {command} failed: {exc}") from exc
        except TimeoutError:
            raise GuestError(f"QMP {command} did not answer in time{self._diagnostics()}") from None

    async def _check_serial(self, dev: str, serial: str, deadline: float) -> None:
        name = disk_name(dev)
        result = await self.run(f"cat /sys/block/{name}/serial", self._remaining(deadline))
        seen = result.check(f"serial of {dev}").output.strip()
        if seen != serial:
            raise GuestError(f"{dev} reports serial {seen!r}, expected {serial!r}")

    async def _teardown(self, *, kill: bool, timeout: float = 30.0) -> None:
        if self._agent is not None:
            await self._agent.close()
            self._agent = None
        proc = self._proc
        if proc is not None and proc.returncode is None and not kill and self._qmp is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(timeout):
                    await self._qmp.execute("quit")
                    await proc.wait()
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
        if self._qmp is not None:
            with contextlib.suppress(Exception):
                await self._qmp.disconnect()
            self._qmp = None
        self._proc = None
        self._disks.clear()
        if self._private_socket_dir and self._socket_dir is not None:
            shutil.rmtree(self._socket_dir, ignore_errors=True)
            self._private_socket_dir = False
        if proc is not None:
            log.info("guest %s: stopped (qemu exit code %s)", self.workdir, proc.returncode)
