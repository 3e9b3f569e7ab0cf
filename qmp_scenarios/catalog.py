"""Looking the named scenarios up: the library (qmp_scenarios.scenarios) loaded, then
the registry read. Separate from :mod:`.registry`, which the library imports to
register: the registry never imports the library back.
"""

from __future__ import annotations

from . import scenarios  # noqa: F401 - importing the library registers every scenario
from .registry import Scenario, registered


def all_scenarios() -> list[Scenario]:
    return sorted(registered().values(), key=lambda s: s.name)


def get_scenario(name: str) -> Scenario:
    """The scenario called ``name``; KeyError naming the known ones if there is none."""
    known = registered()
    try:
        return known[name]
    except KeyError:
        raise KeyError(f"unknown scenario {name!r} (known: {', '.join(sorted(known))})"
                       ) from None
