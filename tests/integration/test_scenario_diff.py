"""``vudm scenario diff`` over seed 001's matrix: each scenario run on vudm and on the
guest kernel's own dm-mpath (dmsetup in the guest, paths on QEMU's NBD client to the same
kind of NBD servers, killed the same way) must agree: verdict, EIO or not, verify, and
the final table/status lines and event counts of the mapped device.

Not in the diff, because they have no kernel side:
- seed001-noflush-suspend-timeout and the two seed001-interrupted-suspend-* scenarios:
  the kernel has no suspend timeout (a dmsetup suspend with I/O stuck on a paused path
  just waits);
- the two spanning scenarios (seed 003's split I/O over two multipath targets): the
  kernel refuses their table, "target type multipath must appear alone in table"
  (docs/kernel-differences.md, multipath-refused/13).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from guests.image import GuestImage
from qmp_scenarios.catalog import all_scenarios
from qmp_scenarios.oracle.scenario_diff import diff_scenario

NO_KERNEL_SIDE = {"seed001-noflush-suspend-timeout", "seed001-interrupted-suspend-pushback",
                  "seed001-interrupted-suspend-late-requeue-eio",
                  "seed001-flush-suspend-spanning-eio", "seed001-noflush-load-spanning"}
SEED001 = [s.name for s in all_scenarios()
           if s.name.startswith("seed001-") and s.name not in NO_KERNEL_SIDE]


@pytest.mark.guest
@pytest.mark.parametrize("name", SEED001)
def test_vudm_and_the_kernel_agree(name: str, guest_image: GuestImage,
                                   tmp_path: Path) -> None:
    diff = asyncio.run(asyncio.wait_for(diff_scenario(name, tmp_path), 1500))
    (tmp_path / "diff.json").write_text(json.dumps(diff.to_json(), indent=2))
    assert diff.kernel is not None and diff.vudm is not None
    assert diff.agree, diff.report() + "\n\nkernel run:\n" + diff.kernel.report()
