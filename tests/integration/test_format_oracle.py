"""The format oracle with a real guest kernel: every dmsetup command sequence of
qmp_scenarios/oracle/sequences.dm against the guest's own device-mapper and against
vudm; what differs must be exactly what docs/kernel-differences.md lists (with reasons).

A fix in vudm makes a listed difference vanish (the test then asks to drop its entry); a
regression makes a new one appear (the test prints the entry to add or the bug to fix).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from guests.image import GuestImage
from qmp_scenarios.oracle.differences import DOC, disagreements, parse_doc
from qmp_scenarios.oracle.format import run_format_oracle


@pytest.mark.guest
def test_format_oracle_matches_the_documented_differences(guest_image: GuestImage,
                                                          tmp_path: Path) -> None:
    report = asyncio.run(asyncio.wait_for(run_format_oracle(tmp_path), 600))
    (tmp_path / "format-oracle.json").write_text(json.dumps(report.to_json(), indent=2))
    assert report.commands > 250
    problems = disagreements(report.differences, parse_doc(DOC.read_text()))
    assert not problems, "\n".join(problems)
