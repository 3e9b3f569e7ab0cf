"""``vudm oracle format [--json FILE]``: run the format oracle and check its differences
against docs/kernel-differences.md (exit 1 when they disagree)."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
from pathlib import Path

from backend.control.cli import Subcommand


def _setup(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="oracle_cmd", required=True)
    fmt = sub.add_parser("format", help="dmsetup command sequences against the guest "
                         "kernel's dm and against vudm, compared reply by reply")
    fmt.add_argument("--json", type=Path, help="write the differences here")
    fmt.add_argument("--workdir", type=Path, help="keep the guest's and daemon's logs here")


def _run(ns: argparse.Namespace) -> int:
    # imported here: every ``vudm`` command loads this module (see cli.py)
    from .oracle.differences import DOC, disagreements, parse_doc
    from .oracle.format import default_workdir, run_format_oracle

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    workdir = (ns.workdir or default_workdir()).resolve()
    report = asyncio.run(run_format_oracle(workdir))
    if ns.json:
        ns.json.write_text(json.dumps(report.to_json(), indent=2) + "\n")
    problems = disagreements(report.differences, parse_doc(DOC.read_text()))
    secs = ", ".join(f"{k} {v:.1f}s" for k, v in report.seconds.items())
    print(f"format oracle: {report.commands} commands, {len(report.differences)} "
          f"differences ({secs})")
    for problem in problems:
        print(problem)
    print(f"{DOC.name}: " + ("in sync" if not problems else f"{len(problems)} disagreements"))
    print(f"logs: {workdir}")
    return 1 if problems else 0


ORACLE = Subcommand("oracle", "compare vudm with the guest kernel's device-mapper",
                    _setup, _run)
"""``vudm oracle``: pyproject.toml names it in the ``vudm.scenarios`` entry points."""
