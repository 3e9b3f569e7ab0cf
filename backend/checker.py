"""The path checker: the daemon's multipathd. It probes every multipath path, fails the
dead ones and reinstates the ones that answer again.

A target with paths is anything that speaks the path-report protocol
(:mod:`backend.dm.paths`; multipath does): the checker sees its path reports and gives
its verdicts through it, nothing else. Every ``interval`` seconds, for each ACTIVE
mapped device whose live table has such targets, each path device is probed once
(concurrently): a disconnected NBD path is first reconnected (``connect()``, as its
server may be back), then sector 0 is read straight from the device with a timeout. A
probe that times out means the path hangs (a partitioned link, a frozen server): its
connection is dropped (``disconnect()``), so the requests stuck on it end with a path
error and multipath retries them on another path instead of waiting for the link to
come back. The verdict goes to the target as ``fail_path(DEV)`` /
``reinstate_path(DEV)``, the verbs of multipathd's messages (a suspended device refuses
with EBUSY; the next round retries), so the target raises the table event (the event
number rises) and the daemon may be told through ``emit("PATH_FAILED" |
"PATH_REINSTATED", {"name": <mapped device>, "dev": <path>})``. For targets with
``no_path_retry N`` the checker also does multipathd's recovery mode: queueing is
turned off (``fail_if_no_path``) on the (N+1)th check in a row that finds no valid
path, and on again (``queue_if_no_path``) once a path is back.

The checker never raises out of its loop: a round that fails is logged and the next
round runs on time.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import mmap
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass

from .blockio import SECTOR_SIZE, BlockDevice, Op, Status
from .dm import MappedDevice
from .dm.mapped_device import DeviceState
from .dm.paths import PathReport, PathTarget
from .errors import VudmError

log = logging.getLogger(__name__)

_PROBED = (DeviceState.ACTIVE, DeviceState.SUSPENDING)
"""A suspend under way does not stop the checker (multipathd keeps checking too)."""

Emit = Callable[[str, Mapping[str, object]], None]
"""The daemon's event hook: ``emit(event_name, data)``."""


@dataclass(frozen=True)
class CheckAction:
    """Something a round changed: ``action`` is fail_path, reinstate_path,
    fail_if_no_path or queue_if_no_path; ``dev`` is the path ("" for the last two)."""

    name: str
    dev: str
    action: str


class PathChecker:
    """Probes multipath paths; see the module docstring. ``start()`` runs it on the
    current loop, ``await stop()`` ends it, ``await check_once()`` is one round."""

    def __init__(self, get_mapped_devices: Callable[[], Iterable[MappedDevice]],
                 emit: Emit | None = None, *, interval: float = 1.0,
                 timeout: float = 2.0) -> None:
        if interval <= 0 or timeout <= 0:
            raise ValueError("interval and timeout must be positive")
        self._get_mapped_devices = get_mapped_devices
        self._emit = emit
        self.interval = interval
        self.timeout = timeout
        self.rounds = 0
        self._no_path_checks: dict[int, int] = {}
        """id(target) -> checks in a row that found no valid path (no_path_retry)."""
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    # --- life cycle --------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Run a round now and then every ``interval`` seconds, until ``stop``."""
        if self.running:
            return
        self._stopping = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="path-checker")

    async def stop(self) -> None:
        """End the loop (a round in progress is cancelled)."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping.set()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.check_once()
            except Exception:
                log.exception("path check round failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.interval)

    # --- one round ---------------------------------------------------------------------

    async def check_once(self) -> list[CheckAction]:
        """Probe every path once and act on the verdicts; returns what changed."""
        self.rounds += 1
        work: list[tuple[MappedDevice, PathTarget]] = [
            (md, t) for md in self._get_mapped_devices()
            if md.state in _PROBED and md.live_table is not None
            for t in md.live_table.targets if isinstance(t, PathTarget)]
        devices = {id(p.device): p.device for _, t in work for p in t.path_reports()}
        failures = {(id(t), p.name): p.failures for _, t in work for p in t.path_reports()}
        verdicts = dict(zip(devices, await asyncio.gather(
            *(self._probe(dev) for dev in devices.values())), strict=True))
        actions: list[CheckAction] = []
        for md, target in work:
            table = md.live_table
            if md.state not in _PROBED or table is None \
                    or id(target) not in {id(t) for t in table.targets}:
                continue  # changed while probing: next round
            for path in target.path_reports():
                alive = verdicts[id(path.device)]
                if alive and path.failures != failures.get((id(target), path.name)):
                    continue  # failed while its probe ran: the probe's OK is older news
                if alive != path.active and self._verdict(md, target, path, alive):
                    verb = "reinstate_path" if alive else "fail_path"
                    actions.append(CheckAction(md.name, path.name, verb))
                    self._tell("PATH_REINSTATED" if alive else "PATH_FAILED",
                               md.name, path.name)
            actions += self._recovery_mode(md, target)
        live = {id(t) for _, t in work}
        self._no_path_checks = {k: v for k, v in self._no_path_checks.items() if k in live}
        return actions

    def _recovery_mode(self, md: MappedDevice, target: PathTarget) -> list[CheckAction]:
        """multipathd's no_path_retry: stop queueing after N checks without a path,
        queue again once one is back."""
        retry = target.no_path_retry
        if retry is None:
            return []
        key = id(target)
        if not any(p.active for p in target.path_reports()):
            checks = self._no_path_checks[key] = self._no_path_checks.get(key, 0) + 1
            if checks > retry and target.queue_if_no_path:
                log.info("%s: no path for %d checks (no_path_retry %d): queueing off",
                         md.name, checks, retry)
                if self._set_queueing(md, target, False):
                    return [CheckAction(md.name, "", "fail_if_no_path")]
            return []
        if self._no_path_checks.pop(key, 0) and not target.queue_if_no_path:
            log.info("%s: a path is back: queueing on again", md.name)
            if self._set_queueing(md, target, True):
                return [CheckAction(md.name, "", "queue_if_no_path")]
        return []

    def _verdict(self, md: MappedDevice, target: PathTarget, path: PathReport,
                 alive: bool) -> bool:
        """Reinstate or fail ``path``; True if its state changed."""
        try:
            if alive:
                return target.reinstate_path(path.name)
            return target.fail_path(path.name)
        except VudmError as exc:
            log.info("%s: %s %s refused: %s", md.name,
                     "reinstate_path" if alive else "fail_path", path.name, exc)
            return False

    def _set_queueing(self, md: MappedDevice, target: PathTarget, on: bool) -> bool:
        try:
            target.set_queue_if_no_path(on)
        except VudmError as exc:
            log.info("%s: %s refused: %s", md.name,
                     "queue_if_no_path" if on else "fail_if_no_path", exc)
            return False
        return True

    def _tell(self, event: str, name: str, dev: str) -> None:
        if self._emit is None:
            return
        try:
            self._emit(event, {"name": name, "dev": dev})
        except Exception:
            log.exception("emit(%s) failed", event)

    # --- probing -------------------------------------------------------------------------

    async def _probe(self, device: BlockDevice) -> bool:
        """True if the device answers: reconnect if it can and must, then read sector 0."""
        connect: Callable[..., Awaitable[None]] | None = getattr(device, "connect", None)
        if getattr(device, "connected", True) is False and connect is not None:
            try:
                await connect(timeout=self.timeout)
            except (VudmError, OSError) as exc:
                log.debug("%s: reconnect failed: %s", device.name, exc)
                return False
        status = await self._read_sector0(device)
        if status is Status.ETIMEDOUT:
            disconnect: Callable[[str], None] | None = getattr(device, "disconnect", None)
            if disconnect is not None and getattr(device, "connected", False):
                log.warning("%s: probe unanswered for %gs: dropping the hung connection",
                            device.name, self.timeout)
                disconnect(f"path checker: probe unanswered for {self.timeout:g}s")
        elif status is not Status.OK:
            log.debug("%s: probe read: %s", device.name, status.name)
        return status is Status.OK

    async def _read_sector0(self, device: BlockDevice) -> Status:
        """Read sector 0 into a page-aligned buffer (O_DIRECT-safe), within ``timeout``.

        A late completion still writes into the buffer, so the completion callback keeps
        it alive, not this frame.
        """
        page = mmap.mmap(-1, mmap.PAGESIZE)
        cell = ctypes.c_char.from_buffer(page)
        result: asyncio.Future[Status] = asyncio.get_running_loop().create_future()

        def done(status: Status, _keep: object = (page, cell)) -> None:
            if not result.done():
                result.set_result(status)

        try:
            device.submit(Op.READ, 0, SECTOR_SIZE, [(ctypes.addressof(cell), SECTOR_SIZE)],
                          done)
        except Exception:  # the contract says submit never raises; a probe must not
            log.exception("%s: submit raised during a probe", device.name)
            return Status.EIO
        try:
            return await asyncio.wait_for(asyncio.shield(result), self.timeout)
        except TimeoutError:
            return Status.ETIMEDOUT
