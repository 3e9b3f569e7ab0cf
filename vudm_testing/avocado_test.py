"""``VudmTest``: an avocado base class for vudm tests, in the style of avocado_qemu's
QemuSystemTest.

- ``self.vudm``: a ``vudm serve`` of the test's own (started on first use), with
  ``self.vudm.qmp(cmd, args)``; ``self.nbd_path(name)`` adds a real NBD path to it.
- ``self.guest``: a guest of the test's own, booted on first use (``.attach``, ``.sh``).
- ``self.run_scenario(name)`` / ``self.run_steps(steps, expect=...)``: run a registered
  scenario or a test's own async steps on a rig, save the result JSON and the timeline
  PNG in ``self.outputdir`` (avocado keeps it with the job's results), and fail the test
  with the verdict when the scenario did not pass.
- Tags: ``:avocado: tags=vudm`` here; subclasses add theirs (e.g. ``guest``,
  ``scenario``), and ``avocado run -t`` filters on them.

Everything started is stopped in ``tearDown``, and the short socket directory removed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from avocado import Test

from backend.images import allocate_image
from guests.image import GuestImage, build_image
from guests.machine import Guest
from qmp_scenarios.evidence import Declared
from qmp_scenarios.nbd_server import NbdServer
from qmp_scenarios.registry import Expect
from qmp_scenarios.result import ScenarioResult
from qmp_scenarios.rig import short_run_dir
from qmp_scenarios.runner import run_scenario, run_steps

from .handles import GuestHandle, Loop, NbdPath, Vudm
from .pytest_plugin import Steps


class VudmTest(Test):  # type: ignore[misc]
    """:avocado: tags=vudm"""

    timeout = 1200

    def setUp(self) -> None:
        self.loop = Loop()
        self.result: ScenarioResult | None = None
        self._image: GuestImage | None = None
        self._vudm: Vudm | None = None
        self._guest: Guest | None = None
        self._paths: list[NbdServer] = []
        self._run_dir = contextlib.ExitStack()
        self.run_dir = self._run_dir.enter_context(short_run_dir(Path(self.workdir) / "vudm"))

    @property
    def image(self) -> GuestImage:
        """The guest image (``images/build.sh``: a no-op when current)."""
        if self._image is None:
            self._image = build_image()
        return self._image

    @property
    def vudm(self) -> Vudm:
        if self._vudm is None:
            from qemu.qmp import QMPClient

            from vudm_testing.daemon import DaemonProcess

            process = DaemonProcess(self.run_dir / "d",
                                    log_path=Path(self.outputdir) / "vudm.log",
                                    extra_args=("--checker-interval", "0.5"))
            self.loop.run(process.start(), 60.0)
            client = QMPClient("avocado")
            self.loop.run(client.connect(str(process.qmp_path)), 30.0)
            self._vudm = Vudm(self.loop, process, client)
        return self._vudm

    @property
    def guest(self) -> GuestHandle:
        if self._guest is None:
            guest = Guest(Path(self.workdir) / "guest", image=self.image)
            self._guest = guest
            self.loop.run(guest.start())
        return GuestHandle(self.loop, self._guest)

    def nbd_path(self, name: str, size_mb: int = 64) -> NbdPath:
        """A real NBD server over an image of its own, registered with ``self.vudm``."""
        image = Path(self.workdir) / f"{name}.img"
        allocate_image(image, size_mb << 20)
        server = NbdServer(self.run_dir / "paths", name, image)
        self.loop.run(server.start(), 60.0)
        self._paths.append(server)
        self.vudm.qmp("dev-add", {"name": name, "uri": server.uri})
        return NbdPath(self.loop, server)

    def run_scenario(self, name: str) -> ScenarioResult:
        """Run registered scenario ``name`` (its evidence declaration included); fail the
        test unless it passed."""
        json_path = Path(self.outputdir) / f"{name}.json"
        return self._judged(run_scenario(name, Path(self.workdir) / "rig",
                                         json_path=json_path))

    def run_steps(self, steps: Steps, *, name: str | None = None,
                  expect: Expect = "no-eio", evidence: Declared | None = None,
                  image_mb: int = 256) -> ScenarioResult:
        """Run ``async def steps(rig)`` like a scenario; JSON + PNG into outputdir."""
        name = name or self.name.name.split(":")[-1]
        out = Path(self.outputdir)
        kwargs: dict[str, Any] = {"name": name, "expect": expect, "image_mb": image_mb,
                                  "evidence": evidence, "json_path": out / f"{name}.json"}
        return self._judged(run_steps(steps, Path(self.workdir) / "rig", **kwargs))

    def _judged(self, run: Coroutine[Any, Any, ScenarioResult]) -> ScenarioResult:
        result = self.loop.run(run, float(self.timeout))
        self.result = result
        self.log.info("%s", result.report())
        if not result.passed:
            self.fail(result.verdict)
        return result

    def tearDown(self) -> None:
        if self._guest is not None:
            with contextlib.suppress(Exception):
                self.loop.run(self._guest.stop(), 60.0)
        if self._vudm is not None:
            with contextlib.suppress(Exception):
                self.loop.run(self._vudm.client.disconnect(), 30.0)
            with contextlib.suppress(Exception):
                self.loop.run(self._vudm.process.stop(), 60.0)
        for server in self._paths:
            with contextlib.suppress(Exception):
                self.loop.run(server.stop(), 60.0)
        self.loop.close()
        # Last, once nothing listens there: a short run dir is outside self.workdir, so
        # avocado's own cleanup would leave it in /tmp.
        self._run_dir.close()
