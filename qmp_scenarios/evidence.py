"""Evidence obligations: the daemon counters a scenario must have moved to prove its rule ran.

A scenario declares ``evidence={"mp": {"split": 1, "pieces.1": 1}, "export:d0":
{"resubmitted": 1}}``: outer keys are mapped-device names (their ``query-dm`` ``stats``)
or ``export:ID`` (that ``query-exports`` entry); inner keys are dotted paths into them
(a number indexes a list: ``pieces.1``, ``targets.0.paths.p0.ios``); values are the
minimum count, or a relation to another counter of the same entry: ``"=K*PATH"`` means
exactly K times PATH, which must itself be at least 1 (``"flush-copies": "=2*flushes"``:
every flush went to two targets, and there were flushes). The runner reads the
counters at the end of the scenario (adding those banked just before a daemon kill)
and the scenario is *hollow* when any is short, whatever the guest saw: a verdict about
a rule that never ran proves nothing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

Obligation = int | str
"""A minimum count, or ``"=K*PATH"``: exactly K times the counter PATH (itself >= 1)."""
Declared = Mapping[str, Mapping[str, Obligation]]
Counters = dict[str, dict[str, Any]]
"""Observed counters: ``{"mp": <stats>, "export:d0": <query-exports entry>}``."""

EXPORT_PREFIX = "export:"


def check_declaration(declared: Declared) -> None:
    """Refuse a malformed declaration when the scenario is registered (ValueError)."""
    for owner, paths in declared.items():
        if not owner or not isinstance(paths, Mapping) or not paths:
            raise ValueError(f"evidence for {owner!r} must name at least one counter")
        for path, minimum in paths.items():
            if not _is_path(path):
                raise ValueError(f"evidence {owner}: bad counter path {path!r}")
            if isinstance(minimum, str):
                relation = _RELATION.fullmatch(minimum)
                if relation is None or not _is_path(relation["path"]) \
                        or int(relation["factor"]) < 1:
                    raise ValueError(f"evidence {owner}.{path}: a relation reads '=K*PATH' "
                                     f"with K >= 1, got {minimum!r}")
            elif not isinstance(minimum, int) or isinstance(minimum, bool) or minimum < 1:
                raise ValueError(f"evidence {owner}.{path}: the minimum must be an int "
                                 f">= 1, got {minimum!r}")


_RELATION = re.compile(r"=(?P<factor>\d+)\*(?P<path>\S+)")


def _is_path(path: str) -> bool:
    return bool(path) and all(path.split("."))


def lookup(entry: object, path: str) -> int | None:
    """The int at dotted ``path`` inside ``entry`` (dicts by key, lists by index), or
    None when the path does not exist or does not end on a number."""
    node = entry
    for part in path.split("."):
        if isinstance(node, Mapping):
            if part not in node:
                return None
            node = node[part]
        elif isinstance(node, list) and part.isdigit():
            index = int(part)
            if index >= len(node):
                return None
            node = node[index]
        else:
            return None
    if isinstance(node, bool) or not isinstance(node, int):
        return None
    return node


def shortfalls(declared: Declared, observed: Counters) -> list[str]:
    """One line per obligation not met, naming the counter, what it was and the minimum."""
    short = []
    for owner, paths in declared.items():
        entry = observed.get(owner)
        for path, minimum in paths.items():
            value = lookup(entry, path) if entry is not None else None
            if isinstance(minimum, str):
                short += _relation_shortfall(owner, entry, path, value, minimum)
            elif value is None:
                seen = "absent" if entry is not None else f"absent ({owner} not found)"
                short.append(f"{owner} {path} {seen}, needs >= {minimum}")
            elif value < minimum:
                short.append(f"{owner} {path} = {value}, needs >= {minimum}")
    return short


def _relation_shortfall(owner: str, entry: object, path: str, value: int | None,
                        relation: str) -> list[str]:
    match = _RELATION.fullmatch(relation)
    assert match is not None  # check_declaration refused anything else
    factor, other = int(match["factor"]), match["path"]
    base = lookup(entry, other) if entry is not None else None
    if value is None or base is None:
        return [f"{owner} {path} or {other} absent, needs {path} = {factor} x {other}"]
    if base < 1:
        return [f"{owner} {other} = 0, needs >= 1 (for {path} = {factor} x {other})"]
    if value != factor * base:
        return [f"{owner} {path} = {value}, needs {factor} x {other} = {factor * base}"]
    return []


def add_counters(into: dict[str, Any], more: Mapping[str, Any]) -> None:
    """Sum ``more`` into ``into``: ints add, lists of ints add by index, dicts add key by
    key; anything else (names, states) is taken from ``more``. Used to add the counters
    read before a daemon restart to those read after it."""
    for key, value in more.items():
        into[key] = _sum(into.get(key), value)


def _sum(have: Any, value: Any) -> Any:
    if isinstance(value, Mapping):
        merged: dict[str, Any] = dict(have) if isinstance(have, Mapping) else {}
        add_counters(merged, value)
        return merged
    if isinstance(value, list) and isinstance(have, list):
        return [have[i] if i >= len(value) else _sum(have[i] if i < len(have) else None,
                                                      value[i])
                for i in range(max(len(have), len(value)))]
    if _is_count(value) and _is_count(have):
        return have + value
    return value


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def counters_from(query_dm: list[dict[str, Any]],
                  query_exports: list[dict[str, Any]]) -> Counters:
    """The observable counters from ``query-dm`` and ``query-exports`` replies."""
    out: Counters = {}
    for entry in query_dm:
        out[entry["name"]] = dict(entry.get("stats", {}))
    for entry in query_exports:
        out[EXPORT_PREFIX + entry["id"]] = dict(entry)
    return out


def describe(declared: Declared) -> str:
    """``mp: split>=1 pieces.1>=1; export:d0: resubmitted>=1`` (for ``scenario list``)."""
    return "; ".join(
        f"{owner}: " + " ".join(f"{p}{n}" if isinstance(n, str) else f"{p}>={n}"
                                for p, n in paths.items())
        for owner, paths in declared.items())
