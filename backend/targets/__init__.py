"""Target types, one module each; importing this package registers them all."""

import backend.targets.flakey  # noqa: F401
from backend.targets import error, linear, striped, zero

__all__ = ["error", "linear", "striped", "zero"]
