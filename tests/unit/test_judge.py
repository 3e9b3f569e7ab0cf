"""The runner's verdict from the guest's evidence, for each expectation."""

from __future__ import annotations

import pytest

from qmp_scenarios.result import FioEvidence, ScenarioResult
from qmp_scenarios.runner import judge

KERNEL_EIO = ["I/O error, dev vda, sector 8 op 0x1:(WRITE)"]


def verdict(expect: str, fio: FioEvidence | None, io_errors: list[str]) -> bool:
    result = ScenarioResult(scenario="x", expect=expect)
    result.guest.fio = fio
    result.guest.io_errors = io_errors
    judge(result)
    return result.passed


CLEAN = FioEvidence(exit_code=0, errors=0, verify="passed")
EIO = FioEvidence(exit_code=1, errors=5, verify="failed")
LOST = FioEvidence(exit_code=1, errors=1, verify="failed")


@pytest.mark.parametrize(("expect", "fio", "io_errors", "passed"), [
    ("no-eio", CLEAN, [], True),
    ("no-eio", EIO, KERNEL_EIO, False),
    ("no-eio", LOST, [], False),
    ("eio", EIO, KERNEL_EIO, True),
    ("eio", LOST, [], False),  # a silent loss is not the EIO an eio sibling must show
    ("eio", CLEAN, [], False),
    ("verify-fails", LOST, [], True),
    ("verify-fails", EIO, KERNEL_EIO, False),  # the device said so: not a silent loss
    ("verify-fails", CLEAN, [], False),
    ("verify-fails", None, [], False),
])
def test_expectations(expect: str, fio: FioEvidence | None, io_errors: list[str],
                      passed: bool) -> None:
    assert verdict(expect, fio, io_errors) is passed
