"""Run one named scenario on a fresh rig, judge the guest's evidence, write JSON + PNG.

The verdict uses only what the guest itself saw: fio's exit code, error count and
verify result, and the guest kernel's I/O error lines. "no-eio" passes when every step
ran and the guest saw no error and verify passed; "eio" passes when every step ran and
the guest saw the error in both fio and its kernel log (the check can fail);
"verify-fails" passes when every step ran and fio's verify failed while the guest
kernel logged no I/O error (writes lost silently, as flakey's drop_writes loses them).

Then the daemon's own evidence: a scenario whose declared counters are short is
*hollow* and fails, whatever the guest saw (its rule never ran, so its verdict proves
nothing).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from guests.machine import Guest

from .evidence import Counters, Declared, shortfalls
from .registry import Expect
from .result import EvidenceRecord, ScenarioResult
from .rig import Rig
from .steps import collect_guest_errors
from .timeline import draw_timeline
from .workloads import read_iops_log

log = logging.getLogger(__name__)


def judge(result: ScenarioResult) -> None:
    """Set ``passed`` and ``verdict`` from the steps and the guest's evidence."""
    failed = [s.name for s in result.steps if not s.ok]
    if failed:
        result.passed = False
        result.verdict = f"step failed: {failed[0]}"
        return
    fio = result.guest.fio
    fio_error = fio is not None and (fio.exit_code != 0 or fio.errors > 0)
    kernel_error = bool(result.guest.io_errors)
    if result.expect == "no-eio":
        if fio is None:
            result.passed, result.verdict = False, "no fio result: nothing was verified"
        elif fio_error or kernel_error or fio.verify == "failed":
            result.passed = False
            result.verdict = (f"guest saw errors: fio exit {fio.exit_code}, {fio.errors} "
                              f"errors, verify {fio.verify}, "
                              f"{len(result.guest.io_errors)} kernel I/O error lines")
        else:
            result.passed = True
            result.verdict = "no error reached the guest; verify " + fio.verify
    elif result.expect == "verify-fails":
        verify_failed = fio is not None and fio.verify == "failed"
        result.passed = verify_failed and not kernel_error
        result.verdict = (
            "the guest's verify caught the loss; the device reported no error"
            if result.passed else
            f"expected a silent loss caught by verify, guest saw: verify "
            f"{fio.verify if fio else 'no fio result'}, "
            f"{len(result.guest.io_errors)} kernel I/O error lines")
    else:
        # On the kernel oracle the paths are guest disks whose error lines share the
        # block layer's printk rate limit with the mapped device's (seen: 10 path lines,
        # then none of dm-0's): with path lines in the log, fio's EIO has to suffice.
        if result.oracle == "kernel" and result.guest.path_error_lines:
            kernel_error = kernel_error or fio_error
        result.passed = fio_error and kernel_error
        result.verdict = ("guest saw EIO, as it must (fio and kernel log)" if result.passed
                          else f"expected EIO, guest saw: fio error {fio_error}, "
                               f"kernel I/O errors {kernel_error}")


def judge_evidence(result: ScenarioResult, declared: Declared | None,
                   observed: Counters) -> None:
    """Record the evidence; a shortfall makes the scenario hollow (failed), whatever the
    guest verdict was. A step failure stays the verdict (it explains the shortfall).
    ``declared`` None (a user's own steps that declare nothing) records the counters
    without judging them; a registered scenario always passes its declaration, and an
    empty one is hollow."""
    if declared is None:
        result.evidence = EvidenceRecord(observed=observed, ok=True)
        return
    short = shortfalls(declared, observed) if declared else ["no evidence declared"]
    result.evidence = EvidenceRecord(
        declared={owner: dict(paths) for owner, paths in declared.items()},
        observed=observed, ok=not short, short=short)
    if not short:
        return
    result.passed = False
    if all(s.ok for s in result.steps):
        result.verdict = (f"hollow: {'; '.join(short)} "
                          f"(the guest's verdict was: {result.verdict or 'none'})")


async def _record_dm_lines(rig: Rig) -> None:
    """The final table/status lines and event number of every mapped device the steps
    created, as the oracle shows them (``vudm scenario diff`` compares them)."""
    for name in rig.dm.created:
        try:
            lines = await rig.dm.lines(name)
        except Exception as e:  # best effort once a step failed
            log.warning("reading %s's dm lines failed: %s", name, e)
            continue
        rig.result.dm[name] = {"table": lines.table, "status": lines.status,
                               "event_nr": lines.event_nr}


async def run_scenario(name: str, workdir: Path, *, json_path: Path | None = None,
                       png_path: Path | None = None, guest: Guest | None = None,
                       oracle: str = "vudm") -> ScenarioResult:
    """Run registered scenario ``name`` on a fresh rig (or on ``guest``, already up);
    ``oracle="kernel"`` runs its dm steps on the guest kernel's own dm instead."""
    from .catalog import get_scenario  # loads the library: only when one is run

    sc = get_scenario(name)
    return await run_steps(sc.fn, workdir, name=name, expect=sc.expect,
                           image_mb=sc.image_mb, json_path=json_path, png_path=png_path,
                           guest=guest, network=sc.network, evidence=sc.evidence,
                           oracle=oracle, path_checker=sc.path_checker)


async def run_steps(fn: Callable[[Rig], Awaitable[None]], workdir: Path, *, name: str,
                    expect: Expect = "no-eio", image_mb: int = 256,
                    json_path: Path | None = None, png_path: Path | None = None,
                    guest: Guest | None = None, network: bool = False,
                    evidence: Declared | None = None, oracle: str = "vudm",
                    path_checker: bool = True) -> ScenarioResult:
    """Run ``fn``'s steps on a rig, judge the guest's evidence, write JSON + PNG.

    Registered scenarios and a user's own steps (the pytest plugin's ``scenario``
    fixture, avocado's VudmTest) go through here, so they are judged alike. With
    ``guest``, the rig uses that running guest (``boot_guest`` adopts it) and leaves it
    running: the caller owns it. ``network``: see :class:`Rig`. ``evidence``: the
    counters the steps must move (:mod:`qmp_scenarios.evidence`); None records them
    without judging. ``oracle``: who answers the dm steps (dm_backends.py); with the
    kernel's dm there are no vudm counters, so the evidence is not judged.
    ``path_checker=False`` runs the daemon without its path checker.
    """
    result = ScenarioResult(scenario=name, expect=expect, oracle=oracle)
    if oracle != "vudm":
        evidence = None
    observed: Counters = {}
    try:
        rig_args = {} if path_checker else {"checker_interval": 0.0}
        async with Rig(workdir, result, image_mb=image_mb, guest=guest,
                       network=network, oracle=oracle, **rig_args) as rig:
            try:
                await fn(rig)
            finally:
                await _record_dm_lines(rig)
                observed = await rig.final_counters()
                result.events = rig.event_records()
                if rig.guest is not None:
                    try:
                        await collect_guest_errors(rig)
                        io_start = result.timings.get("io_start")
                        if io_start is not None:
                            result.iops = await read_iops_log(rig.guest, io_start)
                    except Exception as e:  # evidence is best effort once a step failed
                        log.warning("collecting guest evidence failed: %s", e)
    except Exception as e:
        log.exception("scenario %s failed", name)
        judge(result)
        judge_evidence(result, evidence, observed)
        result.passed = False
        result.verdict = f"scenario error: {type(e).__name__}: {e}"
    else:
        judge(result)
        judge_evidence(result, evidence, observed)
    if json_path is not None:
        result.write(json_path)
        draw_timeline(result, png_path or json_path.with_suffix(".png"))
    return result
