"""Named scenarios, registered by decorator: ``vudm scenario list`` shows them.

The library's modules import this one to register; looking scenarios up (which loads
the library) is :mod:`qmp_scenarios.catalog`'s, so neither side imports the other back.

Each scenario says what the guest must see (``expect``), which family it belongs to
(every family has a "no-eio" member and an "eio" sibling showing the same checks catch
an error) and the evidence it must produce: the daemon counters that prove its rule ran
(see :mod:`qmp_scenarios.evidence`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from .evidence import Obligation, check_declaration
from .rig import Rig

Expect = Literal["no-eio", "eio", "verify-fails"]
"""What the guest must see: no error and verify passed; EIO (fio and kernel log); or a
verify failure with no I/O error at all (data silently lost: only verify can tell)."""
ScenarioFn = Callable[[Rig], Awaitable[None]]


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    expect: Expect
    fn: ScenarioFn
    image_mb: int = 256
    network: bool = False
    """Run the daemon in a network namespace of the rig's own, for ``nbd://`` paths
    that can be partitioned (:mod:`qmp_scenarios.netns`)."""
    family: str = ""
    """Scenarios that share a workload and differ in whether EIO must reach the guest."""
    evidence: Mapping[str, Mapping[str, Obligation]] = field(default_factory=dict)
    """Minimum daemon counters: ``{"mp": {"split": 1}}`` (see qmp_scenarios.evidence)."""
    path_checker: bool = True
    """False: the daemon runs without its path checker (a scenario about I/O stuck on a
    hung path, which the checker would fail within its probe timeout)."""


_scenarios: dict[str, Scenario] = {}


def scenario(name: str, description: str, expect: Expect = "no-eio",
             image_mb: int = 256, network: bool = False, *, family: str = "",
             evidence: Mapping[str, Mapping[str, Obligation]] | None = None,
             path_checker: bool = True) -> Callable[[ScenarioFn], ScenarioFn]:
    """Register ``fn`` as scenario ``name``; ``expect`` says what the guest must see,
    ``family`` which no-eio/eio pair it belongs to, ``evidence`` the counters it must
    move (a malformed declaration is a ValueError at import)."""
    declared = {owner: dict(paths) for owner, paths in (evidence or {}).items()}
    check_declaration(declared)

    def deco(fn: ScenarioFn) -> ScenarioFn:
        if name in _scenarios:
            raise ValueError(f"scenario {name!r} registered twice")
        _scenarios[name] = Scenario(name, description, expect, fn, image_mb,
                                     network, family, declared, path_checker)
        return fn

    return deco


def unregister(name: str) -> None:
    """Drop a scenario registered at run time (tests that build a deliberately broken
    one); the library's own scenarios stay."""
    _scenarios.pop(name, None)


def registered() -> dict[str, Scenario]:
    """The scenarios registered so far (:mod:`.catalog` loads the library first)."""
    return dict(_scenarios)
