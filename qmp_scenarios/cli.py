"""``vudm scenario list``, ``vudm scenario run NAME [--json FILE] [--oracle kernel]`` and
``vudm scenario diff NAME`` (the same scenario on vudm and on the guest kernel's dm)."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import tempfile
from pathlib import Path

from backend.control.cli import Subcommand


def _setup(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="scenario_cmd", required=True)
    sub.add_parser("list", help="list the named scenarios")
    run = sub.add_parser("run", help="run one scenario against a real guest")
    run.add_argument("name")
    run.add_argument("--json", type=Path, help="write the result here (and a .png beside)")
    run.add_argument("--workdir", type=Path, help="keep sockets and logs here")
    run.add_argument("--verbose", "-v", action="store_true")
    run.add_argument("--keep-images", action="store_true",
                     help="keep the disk images of a passed run (a failed run keeps them "
                          "always)")
    run.add_argument("--oracle", choices=("vudm", "kernel"), default="vudm",
                     help="who answers the dm steps: vudm (default) or the guest kernel's "
                          "own device-mapper (dmsetup in the guest)")
    diff = sub.add_parser("diff", help="run a scenario on vudm and on the guest kernel's "
                          "dm; print both side by side; exit 1 on a disagreement")
    diff.add_argument("name")
    diff.add_argument("--json", type=Path, help="write the comparison here")
    diff.add_argument("--workdir", type=Path, help="keep both runs' logs here")
    diff.add_argument("--verbose", "-v", action="store_true")


def _run(ns: argparse.Namespace) -> int:
    # Imported here, not at the top: every ``vudm`` command (``vudm serve`` too) loads
    # this module, and the scenario library is a fifth of a second of imports.
    from .catalog import all_scenarios, get_scenario
    from .evidence import describe
    from .runner import run_scenario

    if ns.scenario_cmd == "list":
        scenarios = all_scenarios()
        width = max(len(sc.name) for sc in scenarios)
        for sc in scenarios:
            print(f"{sc.name:<{width}}  expect {sc.expect:<7} {sc.description}")
            print(f"{'':<{width}}  family {sc.family or '-'}; evidence: "
                  f"{describe(sc.evidence) or 'NONE (the scenario will be judged hollow)'}")
        return 0
    logging.basicConfig(level=logging.INFO if ns.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s: %(message)s")
    try:
        get_scenario(ns.name)
    except KeyError as e:
        print(f"vudm scenario: {e.args[0]}")
        return 2
    workdir = ns.workdir or Path(tempfile.mkdtemp(prefix=f"vudm-{ns.name}-"))
    if ns.scenario_cmd == "diff":
        return _diff(ns, workdir.resolve())
    result = asyncio.run(run_scenario(ns.name, workdir.resolve(), json_path=ns.json,
                                      oracle=ns.oracle))
    print(result.report())
    if ns.json:
        print(f"result: {ns.json} and {ns.json.with_suffix('.png')}")
    if result.passed and not ns.keep_images:
        _free_images(workdir)
    print(f"logs: {workdir}")
    return 0 if result.passed else 1


def _free_images(workdir: Path) -> None:
    """Scenario images are fully allocated (256 MiB and up each): a passed run keeps its
    logs and frees them, or ``make demo`` in a loop fills the disk."""
    for image in workdir.rglob("*.img"):
        if image.is_file() and not image.is_symlink():
            image.unlink()


def _diff(ns: argparse.Namespace, workdir: Path) -> int:
    from .oracle.scenario_diff import diff_scenario

    diff = asyncio.run(diff_scenario(ns.name, workdir, progress=print))
    print(diff.report())
    if ns.json:
        ns.json.write_text(json.dumps(diff.to_json(), indent=2) + "\n")
        print(f"comparison: {ns.json}")
    print(f"logs: {workdir} (vudm/, kernel/, vudm.json, kernel.json)")
    return 0 if diff.agree else 1


SCENARIO = Subcommand("scenario", "run QMP scenarios against real guests", _setup, _run)
"""``vudm scenario``: pyproject.toml names it in the ``vudm.scenarios`` entry points."""
