"""fio command lines for the guest: a data-verifying random writer and benchmarks.

Every job prints one JSON document on stdout (``--output-format=json``) and writes to
the raw device with O_DIRECT, so the guest page cache neither hides nor absorbs I/O.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Workload = Literal["randread", "randwrite", "read", "write", "randrw"]
IoEngine = Literal["libaio", "io_uring", "psync"]


@dataclass(frozen=True)
class FioJob:
    """One fio job; :meth:`command` renders the guest shell command."""

    filename: str
    rw: Workload
    bs: str = "4k"
    iodepth: int = 16
    size: str | None = None  # None: the whole device
    runtime_s: float | None = None
    time_based: bool = False
    ramp_time_s: float = 0.0
    ioengine: IoEngine = "libaio"
    direct: bool = True
    numjobs: int = 1
    verify: bool = False
    verify_backlog: int | None = None
    name: str = "vudm"
    extra: Sequence[tuple[str, str]] = ()

    def args(self) -> list[str]:
        """fio's argv (without the program name)."""
        opts: list[tuple[str, str]] = [
            ("name", self.name),
            ("filename", self.filename),
            ("rw", self.rw),
            ("bs", self.bs),
            ("iodepth", str(self.iodepth)),
            ("ioengine", self.ioengine),
            ("direct", "1" if self.direct else "0"),
            ("numjobs", str(self.numjobs)),
            ("group_reporting", "1"),
            ("lat_percentiles", "1"),
            ("percentile_list", "50:99:99.9"),
            ("output-format", "json"),
        ]
        if self.size is not None:
            opts.append(("size", self.size))
        if self.runtime_s is not None:
            opts.append(("runtime", f"{self.runtime_s:g}"))
        if self.time_based:
            opts.append(("time_based", "1"))
        if self.ramp_time_s:
            opts.append(("ramp_time", f"{self.ramp_time_s:g}"))
        if self.verify:
            # crc32c over every block, a header with offset and the write's sequence number
            # (numberio; fio checks it for fixed-bs write jobs that are not time_based),
            # and the first mismatch ends the run with a non-zero exit code.
            opts += [
                ("verify", "crc32c"),
                ("do_verify", "1"),
                ("verify_fatal", "1"),
                ("verify_dump", "0"),
            ]
            if self.verify_backlog is not None:
                opts.append(("verify_backlog", str(self.verify_backlog)))
        opts += list(self.extra)
        return [f"--{key}={value}" for key, value in opts]

    def command(self) -> str:
        """The guest shell command running this job."""
        return shlex.join(["fio", *self.args()])


def verify_job(
    filename: str,
    size: str = "64M",
    *,
    bs: str = "4k",
    iodepth: int = 16,
    runtime_s: float | None = None,
    ioengine: IoEngine = "libaio",
    verify_backlog: int | None = None,
) -> FioJob:
    """Random writes over ``size`` bytes, then read back and check every block.

    ``runtime_s`` is an upper bound (the job is not time_based, so sequence numbers are
    checked); ``verify_backlog`` verifies during the writes, every that many blocks.
    """
    return FioJob(
        filename=filename,
        rw="randwrite",
        bs=bs,
        iodepth=iodepth,
        size=size,
        runtime_s=runtime_s,
        ioengine=ioengine,
        verify=True,
        verify_backlog=verify_backlog,
        name="vudm-verify",
    )


def bench_job(
    filename: str,
    rw: Workload,
    *,
    bs: str = "4k",
    iodepth: int = 32,
    runtime_s: float = 10.0,
    ramp_time_s: float = 0.0,
    ioengine: IoEngine = "libaio",
    size: str | None = None,
    numjobs: int = 1,
) -> FioJob:
    """A time-based benchmark: randread, randwrite, read (sequential) or write."""
    return FioJob(
        filename=filename,
        rw=rw,
        bs=bs,
        iodepth=iodepth,
        size=size,
        runtime_s=runtime_s,
        time_based=True,
        ramp_time_s=ramp_time_s,
        ioengine=ioengine,
        numjobs=numjobs,
        name=f"vudm-{rw}",
    )
