"""Leak loops: a real guest's disk hotplugged and unplugged 200 times into one daemon, and
the daemon SIGKILLed and restarted 50 times under an attached guest, leave the daemon's
fd count and memory flat.

"Flat" (measured after a few warm-up rounds, so lazily built caches and Python's own
arenas have settled):

- fds: the count after the last round is at most the warm count + 2. A leaked
  connection costs at least the socket, the memfd of guest memory and 2 eventfds per
  queue, so even one leak per 50 rounds shows.
- VmSize: grows by less than 64 MiB. Every connection maps the guest's 512 MiB of RAM;
  one leaked mapping is 8 times the bound.
- VmRSS: grows by less than 16 MiB (about 80 KiB a round over 200 rounds, 300 KiB a
  restart): far below a leaked guest buffer set or a table per round, above the noise
  of Python's allocator (a few MiB, measured).
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest

from guests.image import GuestImage
from qmp_scenarios.result import ScenarioResult
from qmp_scenarios.rig import Rig
from qmp_scenarios.steps import attach_disk, boot_guest, create_dm, detach_disk

HOTPLUG_CYCLES = 200
RESTARTS = 50
WARMUP = 5
FD_SLACK = 2
VMSIZE_BOUND = 64 << 20
RSS_BOUND = 16 << 20


def usage(pid: int) -> dict[str, int]:
    """The daemon's open fds and VmSize/VmRSS in bytes, from /proc."""
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    kb = {k: int(v.split()[0]) * 1024 for k, v in
          (line.split(":", 1) for line in status) if k in ("VmSize", "VmRSS")}
    return {"fds": len(os.listdir(f"/proc/{pid}/fd")), "vmsize": kb["VmSize"],
            "rss": kb["VmRSS"]}


def check_flat(samples: list[dict[str, int]], what: str) -> dict[str, Any]:
    warm, last = samples[WARMUP - 1], samples[-1]
    figures = {"rounds": len(samples), "warm": warm, "last": last,
               "max_fds": max(s["fds"] for s in samples[WARMUP - 1:]),
               "max_rss": max(s["rss"] for s in samples[WARMUP - 1:])}
    assert last["fds"] <= warm["fds"] + FD_SLACK, (what, figures)
    assert last["vmsize"] - warm["vmsize"] < VMSIZE_BOUND, (what, figures)
    assert last["rss"] - warm["rss"] < RSS_BOUND, (what, figures)
    return figures


async def _guest_rig(tmp_path: Path, name: str) -> tuple[Rig, ScenarioResult]:
    result = ScenarioResult(scenario=name, expect="no-eio")
    return Rig(tmp_path / "rig", result, image_mb=64), result


async def _wait_connected(rig: Rig, disk_id: str, mark: int) -> None:
    exports = await rig.qmp("query-exports")
    if not next(e for e in exports if e["id"] == disk_id)["connected"]:
        await rig.events.wait("EXPORT_CONNECTED", {"id": disk_id}, since=mark, timeout=60)


@pytest.mark.guest
def test_hotplug_cycles_leave_fds_and_memory_flat(guest_image: GuestImage,
                                                  tmp_path: Path) -> None:
    async def main() -> dict[str, Any]:
        rig, _ = await _guest_rig(tmp_path, "leak-hotplug")
        async with rig:
            await create_dm(rig, "v", f"0 131072 linear file:{rig.image} 0")
            guest = await boot_guest(rig)
            assert rig.vudm.proc is not None
            pid = rig.vudm.proc.pid
            samples = []
            for _ in range(HOTPLUG_CYCLES):
                dev = await attach_disk(rig, "v", "d0")
                res = await guest.run(f"dd if={dev} of=/dev/null bs=4k count=1 iflag=direct",
                                      60)
                assert res.exit_code == 0, res.stderr
                await detach_disk(rig, "d0")
                samples.append(usage(pid))
            return check_flat(samples, "hotplug")

    figures = asyncio.run(asyncio.wait_for(main(), 3600))
    (tmp_path / "figures.json").write_text(json.dumps(figures, indent=1))
    print("hotplug leak figures:", json.dumps(figures))


@pytest.mark.guest
def test_daemon_restarts_leave_fds_and_memory_flat(guest_image: GuestImage,
                                                   tmp_path: Path) -> None:
    async def main() -> dict[str, Any]:
        rig, _ = await _guest_rig(tmp_path, "leak-restart")
        async with rig:
            await create_dm(rig, "v", f"0 131072 linear file:{rig.image} 0")
            guest = await boot_guest(rig)
            dev = await attach_disk(rig, "v", "d0")
            samples = []
            for _ in range(RESTARTS):
                await rig.kill_daemon()
                mark = rig.events.mark()
                await rig.restart_daemon()
                await _wait_connected(rig, "d0", mark)
                res = await guest.run(f"dd if=/dev/zero of={dev} bs=4k count=16 "
                                      "oflag=direct", 60)
                assert res.exit_code == 0, res.stderr
                assert rig.vudm.proc is not None
                samples.append(usage(rig.vudm.proc.pid))
            return check_flat(samples, "restart")

    figures = asyncio.run(asyncio.wait_for(main(), 3600))
    (tmp_path / "figures.json").write_text(json.dumps(figures, indent=1))
    print("restart leak figures:", json.dumps(figures))
