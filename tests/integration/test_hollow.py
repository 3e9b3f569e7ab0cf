"""A scenario deliberately broken to skip its rule is reported hollow, although the guest
saw nothing wrong: the spanning set-up with the old offsets (fio writes from the start of
the device, so no write ever reaches the boundary between the two targets), run for real
(guest, NBD paths, vudm, fio verify) by the real runner, which reads the real counters."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from guests.image import GuestImage
from qmp_scenarios.rig import Rig
from qmp_scenarios.runner import run_steps
from qmp_scenarios.scenarios.common import spanning_mpath_disk
from qmp_scenarios.steps import start_io, wait_io
from qmp_scenarios.workloads import verify_writes


async def old_spanning_offsets(rig: Rig) -> None:
    """What seed001-noflush-load-spanning did before issue 11: writes from offset 0,
    all of them inside target 0."""
    span = await spanning_mpath_disk(rig)
    io = await start_io(rig, verify_writes(span.disk, size="8M", rate_iops=2000, bs="64k"))
    await wait_io(rig, io)


@pytest.mark.guest
def test_a_scenario_that_never_splits_io_is_hollow(guest_image: GuestImage,
                                                    tmp_path: Path) -> None:
    result = asyncio.run(asyncio.wait_for(run_steps(
        old_spanning_offsets, tmp_path / "rig", name="old-spanning-offsets",
        evidence={"mp": {"split": 1}}, json_path=tmp_path / "hollow.json"), 900))
    report = result.report()
    assert all(s.ok for s in result.steps), report
    fio = result.guest.fio
    assert fio is not None and fio.exit_code == 0 and fio.verify == "passed", report
    assert not result.passed, report
    assert result.verdict.startswith("hollow: mp split = 0, needs >= 1"), report
    assert "no error reached the guest" in result.verdict, report
    assert result.evidence.short == ["mp split = 0, needs >= 1"]
    observed = result.evidence.observed["mp"]
    assert observed["ios"] > 128 and observed["pieces"][0] >= 128, report
