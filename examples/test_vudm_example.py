"""A user's own vudm tests, written with the vudm pytest plugin's fixtures.

Run with ``.venv/bin/pytest -n 2 examples/`` after ``make setup``: each xdist worker
boots one guest and lends it to its tests in turn; the guest image is built once.
"""

from __future__ import annotations

from qmp_scenarios.rig import Rig
from qmp_scenarios.scenarios.common import mpath_disk
from qmp_scenarios.steps import kill_path, start_io, wait_io
from qmp_scenarios.workloads import verify_writes


def test_failover_under_fio(scenario) -> None:  # type: ignore[no-untyped-def]
    """Kill one of two NBD paths under verified writes: the guest must see no error."""

    async def steps(rig: Rig) -> None:
        disk = await mpath_disk(rig, ["p0", "p1"])
        io = await start_io(rig, verify_writes(disk, size="8M", rate_iops=2000), flowing=50)
        await kill_path(rig, "p0", wait_failed="mp")
        await wait_io(rig, io)

    # The daemon's counters that prove the failover happened (else: "hollow").
    result = scenario(steps, evidence={"mp": {"targets.0.path-failures": 1,
                                              "targets.0.paths.p1.ios": 1}})
    assert result.passed, result.report()
    assert result.guest.fio is not None and result.guest.fio.verify == "passed"


def test_failover_without_queueing_shows_eio(scenario) -> None:  # type: ignore[no-untyped-def]
    """The sibling: with every path dead and no queue_if_no_path, the same checks see EIO."""

    async def steps(rig: Rig) -> None:
        disk = await mpath_disk(rig, ["p0", "p1"], queue_if_no_path=False)
        io = await start_io(rig, verify_writes(disk, size="8M", rate_iops=2000), flowing=50)
        await kill_path(rig, "p0", wait_failed="mp")
        await kill_path(rig, "p1", wait_failed="mp")
        await wait_io(rig, io)

    result = scenario(steps, expect="eio",
                      evidence={"mp": {"targets.0.path-failures": 2, "eio": 1}})
    assert result.passed, result.report()


def test_linear_over_nbd_with_dm_commands(  # type: ignore[no-untyped-def]
        vudm, nbd_path, vudm_mapped, vudm_export, vudm_guest) -> None:
    """Plain synchronous style: a linear device over a real NBD server, served to the
    worker's guest; a noflush suspend and resume in between writes."""
    nbd_path("p0", size_mb=32)
    vudm_mapped("vol", "0 65536 linear p0 0")
    dev = vudm_guest.attach("d0", vudm_export("d0", "vol"))
    wrote = vudm_guest.sh(f"dd if=/dev/urandom of={dev} bs=64k count=64 oflag=direct"
                          f" && md5sum {dev}")
    assert wrote.exit_code == 0, wrote.stderr
    vudm.qmp("dm-suspend", {"name": "vol", "noflush": True})
    assert vudm.query_dm("vol")["state"] == "SUSPENDED"
    vudm.qmp("dm-resume", {"name": "vol"})
    again = vudm_guest.sh(f"echo 3 > /proc/sys/vm/drop_caches; md5sum {dev}")
    assert again.output.split()[0] == wrote.output.split()[0]
    assert vudm_guest.io_errors() == []
