"""The format oracle: the same dmsetup command sequences against the guest kernel's dm and
against vudm, compared reply by reply (no guest I/O).

``sequences.dm`` holds the sequences. The kernel side runs them all in one guest boot, in
one agent round trip (``vudm-dm --batch``), on six zero-reading virtio disks; the vudm side
runs them through the ``vudm`` CLI's own verbs (parsing and dmsetup-style output) over QMP
against a ``vudm serve`` with six null devices. Both run at once. A command agrees when both
accept it with the same output lines (device names normalised to ``$Dn``, device numbers
dropped from ``info``) or both refuse it. What disagrees is either fixed in vudm or listed,
with its reason, in docs/kernel-differences.md (a test keeps the two in sync).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shlex
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from qemu.qmp import QMPClient

from backend.control import cli
from backend.errors import ClientError
from guests.kernel_dm import DmReply, KernelDm
from guests.machine import Guest
from vudm_testing.daemon import DaemonProcess

SEQUENCES = Path(__file__).with_name("sequences.dm")
DISKS = 6
DISK_BYTES = 64 << 20
PLACEHOLDER = re.compile(r"\$D(\d)")
DROPPED_LINES = re.compile(r"^Major, minor:")
"""Device numbers are the kernel's to choose; vudm's are a per-daemon counter."""


@dataclass(frozen=True)
class Command:
    """One command of a sequence: ``id`` is ``SEQUENCE/N`` (N counts from 1)."""

    id: str
    text: str
    argv: tuple[str, ...]


@dataclass(frozen=True)
class Sequence_:
    name: str
    commands: tuple[Command, ...]

    def created(self) -> list[str]:
        return list(dict.fromkeys(c.argv[1] for c in self.commands
                                  if len(c.argv) > 1 and c.argv[0] == "create"))


@dataclass(frozen=True)
class Outcome:
    """A side's answer to a command, normalised: accepted or not, output lines."""

    ok: bool
    lines: tuple[str, ...]
    error: str = ""

    def shown(self) -> str:
        if not self.ok:
            return "refused"
        return " | ".join(self.lines) if self.lines else "(no output)"


@dataclass(frozen=True)
class Difference:
    id: str
    command: str
    kernel: str
    vudm: str
    kernel_error: str = ""
    vudm_error: str = ""


@dataclass
class FormatReport:
    commands: int = 0
    differences: list[Difference] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        return {"commands": self.commands, "seconds": self.seconds,
                "differences": [asdict(d) for d in self.differences]}


def parse_sequences(text: str) -> list[Sequence_]:
    """``== NAME`` headers, then one dmsetup command line per line; ``#`` comments."""
    seqs: list[Sequence_] = []
    name: str | None = None
    cmds: list[Command] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("== "):
            if name is not None:
                seqs.append(Sequence_(name, tuple(cmds)))
            name, cmds = line[3:].strip(), []
            continue
        if name is None:
            raise ValueError(f"sequences line {lineno}: a command before the first '== NAME'")
        argv = tuple(w.replace("\\n", "\n") for w in shlex.split(line))
        cmds.append(Command(f"{name}/{len(cmds) + 1}", line, argv))
    if name is not None:
        seqs.append(Sequence_(name, tuple(cmds)))
    names = [s.name for s in seqs]
    if len(set(names)) != len(names):
        raise ValueError("sequence names must be unique")
    return seqs


def substitute(argv: Sequence[str], names: Sequence[str]) -> list[str]:
    """``$Dn`` -> this side's name of disk n."""
    return [PLACEHOLDER.sub(lambda m: names[int(m.group(1))], a) for a in argv]


def normalise(lines: Sequence[str], names: Sequence[str]) -> tuple[str, ...]:
    """This side's disk names back to ``$Dn`` (whole words only); device numbers dropped;
    trailing blanks dropped (the kernel ends many status lines with a space: dmsetup prints
    what the target emitted, and no reader depends on it)."""
    back = {n: f"$D{i}" for i, n in enumerate(names)}
    out = []
    for line in "\n".join(lines).splitlines():
        if DROPPED_LINES.match(line):
            continue
        out.append(" ".join(back.get(w, w) for w in line.rstrip().split(" ")))
    return tuple(out)


def compare(seqs: Sequence[Sequence_], kernel: dict[str, Outcome],
            vudm: dict[str, Outcome]) -> list[Difference]:
    diffs = []
    for seq in seqs:
        for c in seq.commands:
            k, v = kernel[c.id], vudm[c.id]
            if k.ok != v.ok or (k.ok and k.lines != v.lines):
                diffs.append(Difference(c.id, c.text, k.shown(), v.shown(), k.error, v.error))
    return diffs


# -- the kernel side ------------------------------------------------------------------


async def run_kernel(seqs: Sequence[Sequence_], workdir: Path,
                     seconds: dict[str, float]) -> dict[str, Outcome]:
    t0 = time.monotonic()
    async with Guest(workdir / "guest", hotplug_slots=DISKS) as guest:
        seconds["kernel_boot"] = time.monotonic() - t0
        dm = KernelDm(guest)
        names = []
        for i in range(DISKS):
            dev = await guest.hotplug_virtio_blk(
                f"z{i}", {"driver": "null-co", "size": DISK_BYTES, "read-zeroes": True})
            names.append(await dm.dev_number(dev))
        seconds["kernel_disks"] = time.monotonic() - t0 - seconds["kernel_boot"]
        batch: list[list[str]] = []
        ids: list[str | None] = []
        for seq in seqs:
            for c in seq.commands:
                batch.append(substitute(c.argv, names))
                ids.append(c.id)
            for name in reversed(seq.created()):  # clean-up, not compared
                batch.append(["remove", name])
                ids.append(None)
        t1 = time.monotonic()
        replies = await dm.batch(batch)
        seconds["kernel_commands"] = time.monotonic() - t1
    return {i: _outcome(r, names) for i, r in zip(ids, replies, strict=True) if i is not None}


def _outcome(reply: DmReply, names: Sequence[str]) -> Outcome:
    return Outcome(reply.ok, normalise(reply.lines, names) if reply.ok else (),
                   reply.error[-300:])


# -- the vudm side --------------------------------------------------------------------


async def run_vudm(seqs: Sequence[Sequence_], workdir: Path,
                   seconds: dict[str, float]) -> dict[str, Outcome]:
    t0 = time.monotonic()
    names = [f"d{i}" for i in range(DISKS)]
    parser = cli.build_parser()
    out: dict[str, Outcome] = {}
    async with DaemonProcess(workdir / "vudm", log_path=workdir / "vudm.log",
                             extra_args=("--checker-interval", "0")) as daemon, \
            daemon.client("format-oracle") as client:
        for n in names:
            await client.execute("dev-add", {"name": n, "uri": f"null:{DISK_BYTES}"})
        for seq in seqs:
            for c in seq.commands:
                out[c.id] = await _vudm_verb(client, parser, substitute(c.argv, names), names)
            for name in reversed(seq.created()):
                await _vudm_verb(client, parser, ["remove", name], names)
    seconds["vudm"] = time.monotonic() - t0
    return out


async def _vudm_verb(client: QMPClient, parser: argparse.ArgumentParser, argv: list[str],
                     names: Sequence[str]) -> Outcome:
    """One verb as ``vudm ARGV`` would run it, on an open client."""
    try:
        ns = parser.parse_args(argv)
    except SystemExit:
        return Outcome(False, (), f"vudm {argv[0]}: usage error")
    try:
        _, lines = await ns.verb(client, ns)
    except ClientError as e:
        return Outcome(False, (), str(e)[-300:])
    return Outcome(True, normalise(lines, names))


# -- both -----------------------------------------------------------------------------


async def run_format_oracle(workdir: Path, sequences: Path = SEQUENCES) -> FormatReport:
    seqs = parse_sequences(sequences.read_text())
    report = FormatReport(commands=sum(len(s.commands) for s in seqs))
    t0 = time.monotonic()
    kernel, vudm = await asyncio.gather(run_kernel(seqs, workdir, report.seconds),
                                        run_vudm(seqs, workdir, report.seconds))
    report.seconds["total"] = time.monotonic() - t0
    report.differences = compare(seqs, kernel, vudm)
    return report


def default_workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="vudm-format-oracle-"))
