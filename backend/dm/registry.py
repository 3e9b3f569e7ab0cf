"""Target types registered by name (``dm_register_target``).

``@register("linear")`` on a Target subclass makes ``linear`` usable in tables. A
duplicate name is a programming error; an unknown name is a TableError (the table parser
adds the line number).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from backend.dm.target import Target
from backend.errors import DuplicateTargetError, TableError

T = TypeVar("T", bound=type[Target])

_targets: dict[str, type[Target]] = {}


def register(name: str) -> Callable[[T], T]:
    """Class decorator registering a target type under ``name``."""

    def decorate(cls: T) -> T:
        if name in _targets:
            raise DuplicateTargetError(
                f"target type {name!r} already registered by {_targets[name].__qualname__}"
            )
        cls.type_name = name
        _targets[name] = cls
        return cls

    return decorate


def unregister(name: str) -> None:
    """Remove a registration (tests that register throwaway types)."""
    _targets.pop(name, None)


def lookup(name: str) -> type[Target]:
    """The class registered as ``name``; TableError if none is."""
    try:
        return _targets[name]
    except KeyError:
        raise TableError(f"unknown target type {name!r}") from None


def registered() -> list[str]:
    """Names of every registered target type, sorted."""
    return sorted(_targets)
