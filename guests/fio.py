"""Running fio in a guest, in the foreground or in the background.

Scenarios start a verifying fio, break paths underneath it, then collect the result::

    handle = await start_fio(guest, verify_job("/dev/vda", "256M"))
    ...  # kill a path, suspend/resume
    result = await handle.wait(timeout=300)
"""

from __future__ import annotations

from .agent import AgentJob
from .fio_job import FioJob, IoEngine, Workload, bench_job, verify_job
from .fio_result import FioDirection, FioResult, parse_fio
from .machine import Guest

__all__ = [
    "FioDirection",
    "FioHandle",
    "FioJob",
    "FioResult",
    "IoEngine",
    "Workload",
    "bench_job",
    "default_timeout",
    "run_fio",
    "start_fio",
    "verify_job",
]


def default_timeout(job: FioJob) -> float:
    """A generous bound for a job: its runtime twice over plus start-up, TCG is slow."""
    return 2 * (job.runtime_s or 120.0) + 2 * job.ramp_time_s + 60.0


class FioHandle:
    """A fio job running in the guest."""

    def __init__(self, guest: Guest, job: FioJob, agent_job: AgentJob) -> None:
        self.guest = guest
        self.job = job
        self._agent_job = agent_job

    async def wait(self, timeout: float | None = None) -> FioResult:
        """fio's result once it exits; GuestError on timeout (fio is then killed)."""
        bound = default_timeout(self.job) if timeout is None else timeout
        result = await self.guest.wait_job(self._agent_job, bound)
        return parse_fio(result.exit_code, result.output, result.stderr)

    async def kill(self) -> None:
        """SIGKILL fio in the guest (wait() then fails: a killed fio prints no JSON)."""
        await self._agent_job.kill()


async def start_fio(guest: Guest, job: FioJob) -> FioHandle:
    """Start fio in the background and return a handle to wait on."""
    return FioHandle(guest, job, await guest.submit(job.command()))


async def run_fio(guest: Guest, job: FioJob, timeout: float | None = None) -> FioResult:
    """Run fio to completion and return its parsed result."""
    return await (await start_fio(guest, job)).wait(timeout)
