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


@pytest.mark.parametrize(("oracle", "path_lines", "passed"), [
    ("kernel", 10, True),   # path lines may have used up the rate limit: fio's EIO suffices
    ("kernel", 0, False),   # nothing rate-limited it: the device's own line must be there
    ("vudm", 10, False),    # vudm's path errors never reach the guest's log
])
def test_kernel_oracle_eio_when_the_paths_used_up_the_rate_limit(
        oracle: str, path_lines: int, passed: bool) -> None:
    result = ScenarioResult(scenario="x", expect="eio", oracle=oracle)
    result.guest.fio = EIO
    result.guest.path_error_lines = path_lines
    judge(result)
    assert result.passed is passed
