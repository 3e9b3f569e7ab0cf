"""Host side of the vudm guest agent (``images/rootfs/sbin/vudm-agent``).

The agent speaks a line protocol over the virtio-serial port ``org.vudm.agent``, which
QEMU connects to a unix socket we listen on. Host to guest: ``RUN <id> <b64 command>``,
``KILL <id>``, ``PING <id>``. Guest to host: ``READY``, ``DONE <id> <rc> <b64 stdout>
<b64 stderr>``, ``PONG <id>``, ``EVENT <action> <disk> <sysfs path>`` (disk hotplug seen
by the guest's mdev hook) and ``ERROR <id> <reason>``. Commands run concurrently; the
agent serializes its replies, so each reply is exactly one line.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from guests.errors import GuestError

log = logging.getLogger(__name__)

# A reply line carries a whole command output in base64 (a fio JSON is tens of KB).
LINE_LIMIT = 64 * 1024 * 1024


@dataclass(frozen=True)
class AgentResult:
    """What a guest command did: exit code, stdout and stderr (kept apart)."""

    exit_code: int
    output: str
    stderr: str = ""

    def check(self, what: str) -> AgentResult:
        """Return self if the command succeeded; GuestError naming ``what`` otherwise."""
        if self.exit_code != 0:
            raise GuestError(
                f"{what} failed in the guest with exit code {self.exit_code}: "
                f"{(self.stderr or self.output).strip()[-2000:]}"
            )
        return self


@dataclass(frozen=True)
class DiskEvent:
    """The guest's mdev hook saw a whole virtio disk come or go."""

    action: str  # "add" or "remove"
    disk: str  # "vdb"
    sysfs_path: str  # /sys/devices/pci0000:00/0000:00:10.0/0000:01:00.0/virtio2/block/vdb


class AgentJob:
    """A command running in the guest; await :meth:`wait` for its result."""

    def __init__(self, agent: AgentClient, job_id: str, command: str) -> None:
        self.agent = agent
        self.job_id = job_id
        self.command = command
        self.result: asyncio.Future[AgentResult] = asyncio.get_running_loop().create_future()

    async def wait(self, timeout: float) -> AgentResult:
        """The command's result; on timeout the job is killed and GuestError raised."""
        try:
            async with asyncio.timeout(timeout):
                return await asyncio.shield(self.result)
        except TimeoutError:
            with contextlib.suppress(GuestError):  # the agent may be gone as well
                await self.kill()
            raise GuestError(
                f"guest command did not finish within {timeout:.0f} s: {self.command[:200]}"
            ) from None

    async def kill(self) -> None:
        """SIGKILL the job's process group in the guest (its DONE still arrives)."""
        if not self.result.done():
            await self.agent.send(f"KILL {self.job_id}")


class AgentClient:
    """One connection to the guest agent; dispatches replies and disk events."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._ids = itertools.count(1)
        self._jobs: dict[str, AgentJob] = {}
        self._pings: dict[str, asyncio.Future[None]] = {}
        self._subscribers: list[asyncio.Queue[DiskEvent]] = []
        self._ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._closed: BaseException | None = None
        self._read_task = asyncio.create_task(self._read_loop(), name="guest-agent-reader")

    async def wait_ready(self, timeout: float) -> str:
        """Wait for the agent's READY line; returns the guest kernel release."""
        async with asyncio.timeout(timeout):
            return await asyncio.shield(self._ready)

    async def ping(self, timeout: float) -> None:
        """Round trip through the agent."""
        ping_id = f"p{next(self._ids)}"
        pong: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pings[ping_id] = pong
        try:
            await self.send(f"PING {ping_id}")
            async with asyncio.timeout(timeout):
                await pong
        finally:
            self._pings.pop(ping_id, None)

    async def submit(self, command: str) -> AgentJob:
        """Start ``sh`` on ``command`` in the guest and return at once."""
        job = AgentJob(self, str(next(self._ids)), command)
        self._jobs[job.job_id] = job
        encoded = base64.b64encode(command.encode()).decode()
        await self.send(f"RUN {job.job_id} {encoded}")
        return job

    async def run(self, command: str, timeout: float) -> AgentResult:
        """Run ``command`` in the guest and wait for its result."""
        job = await self.submit(command)
        return await job.wait(timeout)

    @contextlib.contextmanager
    def disk_events(self) -> Iterator[asyncio.Queue[DiskEvent]]:
        """Collect disk events while the block is active (subscribe before acting)."""
        queue: asyncio.Queue[DiskEvent] = asyncio.Queue()
        self._subscribers.append(queue)
        try:
            yield queue
        finally:
            self._subscribers.remove(queue)

    async def send(self, line: str) -> None:
        """Send one protocol line."""
        if self._closed is not None:
            raise GuestError("guest agent connection is closed") from self._closed
        self._writer.write(line.encode() + b"\n")
        await self._writer.drain()

    async def close(self) -> None:
        """Drop the connection; pending commands fail with GuestError."""
        self._read_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._read_task
        self._writer.close()
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()
        self._fail_pending(GuestError("guest agent connection closed"))

    async def _read_loop(self) -> None:
        try:
            while line := await self._reader.readline():
                self._dispatch(line.decode("ascii", errors="replace").rstrip("\n"))
            self._fail_pending(GuestError("guest agent closed the connection"))
        except (OSError, ValueError) as exc:  # ValueError: a line over LINE_LIMIT
            self._fail_pending(GuestError(f"guest agent connection failed: {exc}"))

    def _dispatch(self, line: str) -> None:
        kind, _, rest = line.partition(" ")
        fields = rest.split(" ")
        if kind == "DONE" and len(fields) >= 2:
            job = self._jobs.pop(fields[0], None)
            if job is not None and not job.result.done():
                job.result.set_result(
                    AgentResult(
                        exit_code=int(fields[1]),
                        output=_decode(fields[2] if len(fields) > 2 else ""),
                        stderr=_decode(fields[3] if len(fields) > 3 else ""),
                    )
                )
        elif kind == "PONG":
            pong = self._pings.get(fields[0])
            if pong is not None and not pong.done():
                pong.set_result(None)
        elif kind == "EVENT" and len(fields) >= 3:
            event = DiskEvent(action=fields[0], disk=fields[1], sysfs_path=fields[2])
            log.debug("guest disk event %s", event)
            for queue in self._subscribers:
                queue.put_nowait(event)
        elif kind == "READY":
            if not self._ready.done():
                self._ready.set_result(fields[-1] if fields else "")
            else:
                log.warning("guest agent restarted")
        elif kind == "ERROR":
            job = self._jobs.pop(fields[0], None)
            reason = " ".join(fields[1:])
            if job is not None and not job.result.done():
                job.result.set_exception(GuestError(f"guest agent refused job: {reason}"))
            log.warning("guest agent error: %s", rest)
        else:
            log.warning("unexpected line from guest agent: %.200s", line)

    def _fail_pending(self, error: GuestError) -> None:
        if self._closed is None:
            self._closed = error
        futures: list[asyncio.Future[Any]] = [job.result for job in self._jobs.values()]
        futures += [*self._pings.values(), self._ready]
        self._jobs.clear()
        for future in futures:
            if not future.done():
                future.set_exception(error)
                # Nobody may be waiting (a background job never waited on): mark the
                # exception seen, so asyncio does not log it; awaiting still raises it.
                future.exception()


def _decode(field: str) -> str:
    return base64.b64decode(field).decode(errors="replace") if field else ""
