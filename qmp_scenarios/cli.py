"""``vudm scenario list`` and ``vudm scenario run NAME [--json FILE]``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import tempfile
from pathlib import Path

from backend.control.cli import register_subcommand

from . import oracle_cli  # noqa: F401 - registers ``vudm oracle``


def _setup(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="scenario_cmd", required=True)
    sub.add_parser("list", help="list the named scenarios")
    run = sub.add_parser("run", help="run one scenario against a real guest")
    run.add_argument("name")
    run.add_argument("--json", type=Path, help="write the result here (and a .png beside)")
    run.add_argument("--workdir", type=Path, help="keep sockets and logs here")
    run.add_argument("--verbose", "-v", action="store_true")


def _run(ns: argparse.Namespace) -> int:
    # Imported here, not at the top: every ``vudm`` command (``vudm serve`` too) loads
    # this module, and the scenario library is a fifth of a second of imports.
    from .evidence import describe
    from .registry import all_scenarios, get_scenario
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
    result = asyncio.run(run_scenario(ns.name, workdir.resolve(), json_path=ns.json))
    print(result.report())
    if ns.json:
        print(f"result: {ns.json} and {ns.json.with_suffix('.png')}")
    print(f"logs: {workdir}")
    return 0 if result.passed else 1


register_subcommand("scenario", help="run QMP scenarios against real guests",
                    setup=_setup, run=_run)
