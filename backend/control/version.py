"""vudm's version, from the installed package metadata (pyproject.toml is the source)."""

from __future__ import annotations

import importlib.metadata

try:
    VERSION = importlib.metadata.version("vudm")
except importlib.metadata.PackageNotFoundError:  # running from a bare checkout
    VERSION = "0.0.0"


def version_triple() -> tuple[int, int, int]:
    """(major, minor, micro), the shape QMP's greeting and query-version use."""
    parts = [int(p) if p.isdigit() else 0 for p in VERSION.split(".")[:3]]
    parts += [0] * (3 - len(parts))
    return parts[0], parts[1], parts[2]
