"""Every QMP command of vudm, one module per family, collected in one registry.

Importing this package registers them all; :class:`Dispatcher` runs them.
"""

from __future__ import annotations

from . import dev, dm, export, misc  # noqa: F401  (each registers its commands)
from .registry import REGISTRY, Command, Dispatcher, Registry, command

__all__ = ["REGISTRY", "Command", "Dispatcher", "Registry", "command"]
