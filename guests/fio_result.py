"""fio's JSON output (``--output-format=json``) as a typed result."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from guests.errors import GuestError


@dataclass(frozen=True)
class FioDirection:
    """Totals of one direction (read or write) over all jobs."""

    ios: int = 0
    io_bytes: int = 0
    iops: float = 0.0
    bw_bytes: float = 0.0  # bytes per second
    lat_mean_us: float = 0.0  # submission to completion
    lat_p99_us: float = 0.0


@dataclass(frozen=True)
class FioResult:
    """What fio reported, plus its exit code and stderr (where I/O errors are named)."""

    exit_code: int
    errors: int  # I/Os that failed (at least 1 per job that stopped on an error)
    error_codes: tuple[int, ...]  # each job's errno (0: none)
    verified: bool  # the job asked for verification
    verify_ok: bool  # verification asked, ran (data was read back), and nothing failed
    read: FioDirection
    write: FioDirection
    raw: dict[str, Any]
    stderr: str = ""

    @property
    def iops(self) -> float:
        return self.read.iops + self.write.iops

    @property
    def ok(self) -> bool:
        """fio succeeded without an I/O error (and verified, if asked)."""
        return self.exit_code == 0 and self.errors == 0 and (self.verify_ok or not self.verified)


def extract_json(stdout: str) -> dict[str, Any]:
    """The JSON document in fio's stdout, skipping any text fio printed before it."""
    if stdout.startswith("{"):
        start = 0
    else:
        start = stdout.find("\n{") + 1
        if start == 0:
            raise ValueError("no JSON object in fio output")
    document, _ = json.JSONDecoder().raw_decode(stdout[start:])
    if not isinstance(document, dict) or "jobs" not in document:
        raise ValueError("fio JSON has no jobs")
    return document


def _direction(jobs: list[dict[str, Any]], key: str) -> FioDirection:
    stats = [job.get(key, {}) for job in jobs]
    ios = sum(int(s.get("total_ios", 0)) for s in stats)
    weighted_lat = 0.0
    p99 = 0.0
    for s in stats:
        lat = s.get("lat_ns", {})
        weighted_lat += float(lat.get("mean", 0.0)) * int(s.get("total_ios", 0))
        percentiles = lat.get("percentile") or s.get("clat_ns", {}).get("percentile") or {}
        p99 = max(p99, float(percentiles.get("99.000000", 0.0)))
    return FioDirection(
        ios=ios,
        io_bytes=sum(int(s.get("io_bytes", 0)) for s in stats),
        iops=sum(float(s.get("iops", 0.0)) for s in stats),
        bw_bytes=sum(float(s.get("bw_bytes", 0.0)) for s in stats),
        lat_mean_us=weighted_lat / ios / 1000 if ios else 0.0,
        lat_p99_us=p99 / 1000,
    )


def parse_fio(exit_code: int, stdout: str, stderr: str = "") -> FioResult:
    """Build a FioResult; GuestError if fio printed no JSON (it did not run at all)."""
    try:
        raw = extract_json(stdout)
    except ValueError as exc:
        raise GuestError(
            f"fio exited with code {exit_code} without a JSON result: {exc}\n"
            f"stderr: {stderr.strip()[-2000:]}\nstdout: {stdout.strip()[-500:]}"
        ) from exc
    jobs: list[dict[str, Any]] = raw["jobs"]
    error_codes = tuple(int(job.get("error", 0)) for job in jobs)
    errors = sum(
        max(int(job.get("total_err", 0)), 1 if code else 0)
        for job, code in zip(jobs, error_codes, strict=True)
    )
    read, write = _direction(jobs, "read"), _direction(jobs, "write")
    verified = any(
        str(job.get("job options", {}).get("verify", "0")) not in ("0", "none") for job in jobs
    )
    verify_ok = verified and exit_code == 0 and errors == 0 and read.ios > 0
    return FioResult(
        exit_code=exit_code,
        errors=errors,
        error_codes=error_codes,
        verified=verified,
        verify_ok=verify_ok,
        read=read,
        write=write,
        raw=raw,
        stderr=stderr,
    )
