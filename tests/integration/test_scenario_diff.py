"""``vudm scenario diff`` over seed 001's matrix: each scenario run on vudm and on the
guest kernel's own dm (dmsetup in the guest, paths on QEMU's NBD client to the same kind
of NBD servers, killed the same way) must agree: verdict, EIO or not, verify, and the
final table/status lines and event counts of each mapped device, except the differences
docs/kernel-differences.md lists for that scenario, each with its reason.

Every seed001-* scenario has a kernel side:
- the spanning ones (two multipath targets in one table, which the kernel refuses:
  "target type multipath must appear alone in table") run on a stack in the guest: each
  multipath line is a dm-mpath device of its own under a linear top
  (qmp_scenarios/dm_backends.py, ``split_stack``);
- the suspend-timeout and interrupted-suspend ones: the kernel's suspend waits
  interruptibly and undoes itself when interrupted, so vudm's suspend timeout is
  ``dmsetup suspend`` SIGKILLed after that many seconds.

CI runs the seed-001 matrix. ``VUDM_DIFF_ALL=1`` (``make oracle-diff``) adds the seed 003
and seed 004 scenarios and the mirror ones (seed 000 and dm-raid1's hold rule): about
two guest runs of a minute or two each per scenario, too long for every CI run.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from guests.image import GuestImage
from qmp_scenarios.catalog import all_scenarios
from qmp_scenarios.oracle.scenario_diff import diff_scenario

SEED001 = [s.name for s in all_scenarios() if s.name.startswith("seed001-")]
MORE = [s.name for s in all_scenarios()
        if s.name.startswith(("seed003-", "seed004-", "flush-no-path-", "seed000-mirror-",
                              "mirror-leg-"))]
SCENARIOS = SEED001 + (MORE if os.environ.get("VUDM_DIFF_ALL") == "1" else [])


@pytest.mark.guest
@pytest.mark.parametrize("name", SCENARIOS)
def test_vudm_and_the_kernel_agree(name: str, guest_image: GuestImage,
                                   tmp_path: Path) -> None:
    diff = asyncio.run(asyncio.wait_for(diff_scenario(name, tmp_path), 1500))
    (tmp_path / "diff.json").write_text(json.dumps(diff.to_json(), indent=2))
    assert diff.kernel is not None and diff.vudm is not None
    assert diff.agree, diff.report() + "\n\nkernel run:\n" + diff.kernel.report()
