"""The guest kernel's own device-mapper, driven with dmsetup through the guest agent.

The image carries dm-mod and every target vudm implements, a static dmsetup and
``/sbin/vudm-dm`` (images/rootfs), which loads the modules on first use and runs dmsetup
without udev. This is the kernel side of the oracle (../shared/DESIGN.md, "The kernel as
oracle"): the same dm commands vudm answers, answered by Linux.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass

from .disk_names import disk_name
from .machine import Guest

MARK = "@@vudm-dm"


@dataclass(frozen=True)
class DmReply:
    """What one dmsetup command did: ``ok`` (exit 0), its stdout lines, and its stderr
    (for a refusal, with the kernel's own reason from its log)."""

    ok: bool
    lines: tuple[str, ...]
    error: str = ""


class KernelDm:
    """dmsetup in ``guest``: one command per agent round trip, or a batch in one."""

    def __init__(self, guest: Guest) -> None:
        self.guest = guest

    async def run(self, args: Sequence[str], timeout: float = 60.0) -> DmReply:
        """``dmsetup ARGS...`` in the guest."""
        res = await self.guest.run("vudm-dm " + shlex.join(args), timeout)
        if res.exit_code == 125:  # vudm-dm could not load the modules
            raise RuntimeError(f"kernel dm unavailable in the guest: {res.stderr.strip()}")
        return DmReply(res.exit_code == 0, tuple(res.output.splitlines()), res.stderr.strip())

    async def batch(self, commands: Sequence[Sequence[str]],
                    timeout: float = 300.0) -> list[DmReply]:
        """Run dmsetup commands in order, in one agent round trip; one reply each.
        Batch mode clears the guest kernel's log (it reads refusal reasons from it)."""
        # a script of "dm ARGS..." lines, one agent round trip (quoting keeps newlines)
        script = "\n".join("dm " + shlex.join(c) for c in commands)
        res = await self.guest.run(f"vudm-dm --batch <<'VUDM_DM_EOF'\n{script}\nVUDM_DM_EOF\n",
                                   timeout)
        if res.exit_code != 0:
            raise RuntimeError(f"vudm-dm --batch failed ({res.exit_code}): {res.stderr[-500:]}")
        replies = parse_batch(res.output)
        if len(replies) != len(commands):
            raise RuntimeError(f"vudm-dm --batch answered {len(replies)} of {len(commands)} "
                               f"commands: {res.stderr[-500:]}")
        return replies

    async def dev_number(self, dev: str) -> str:
        """``major:minor`` of a guest block device (how the kernel's tables name it)."""
        res = await self.guest.run(f"cat /sys/block/{disk_name(dev)}/dev", 30)
        return res.check(f"device number of {dev}").output.strip()


def parse_batch(output: str) -> list[DmReply]:
    """Split ``vudm-dm --batch`` output (see images/rootfs/sbin/vudm-dm) into replies."""
    replies: list[DmReply] = []
    out: list[str] = []
    err: list[str] = []
    into: list[str] | None = None
    for line in output.splitlines():
        if line == f"{MARK} out":
            out, err = [], []
            into = out
        elif line == f"{MARK} err":
            into = err
        elif line.startswith(f"{MARK} rc "):
            rc = int(line.split()[2])
            replies.append(DmReply(rc == 0, tuple(out), "\n".join(err).strip()))
            into = None
        elif into is not None:
            into.append(line)
    return replies
