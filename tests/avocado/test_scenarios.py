"""Avocado adapters over qmp_scenarios: one test per named scenario, nothing else.

Avocado finds tests by reading this file, so each scenario has its own method (a pytest
test checks that none is missing). Results (JSON + PNG) land in the test's outputdir.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from avocado import Test

from qmp_scenarios.runner import run_scenario


class Scenarios(Test):
    """:avocado: tags=guest,scenario"""

    def _run(self, name: str) -> None:
        out = Path(self.outputdir)
        result = asyncio.run(asyncio.wait_for(
            run_scenario(name, Path(self.workdir) / "rig", json_path=out / f"{name}.json"),
            900))
        self.log.info("%s", result.report())
        if not result.passed:
            self.fail(result.verdict)

    def test_linear_verify(self) -> None:
        self._run("linear-verify")

    def test_error_target_eio(self) -> None:
        self._run("error-target-eio")
