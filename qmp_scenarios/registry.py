"""Named scenarios, registered by decorator: ``vudm scenario list`` shows them."""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

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


_scenarios: dict[str, Scenario] = {}


def scenario(name: str, description: str, expect: Expect = "no-eio",
             image_mb: int = 256, network: bool = False
             ) -> Callable[[ScenarioFn], ScenarioFn]:
    """Register ``fn`` as scenario ``name``; ``expect`` says what the guest must see."""

    def deco(fn: ScenarioFn) -> ScenarioFn:
        if name in _scenarios:
            raise ValueError(f"scenario {name!r} registered twice")
        _scenarios[name] = Scenario(name, description, expect, fn, image_mb,
                                     network)
        return fn

    return deco


def all_scenarios() -> list[Scenario]:
    _load()
    return sorted(_scenarios.values(), key=lambda s: s.name)


def get_scenario(name: str) -> Scenario:
    _load()
    try:
        return _scenarios[name]
    except KeyError:
        known = ", ".join(sorted(_scenarios))
        raise KeyError(f"unknown scenario {name!r} (known: {known})") from None


def _load() -> None:
    importlib.import_module("qmp_scenarios.scenarios")  # registers the library
