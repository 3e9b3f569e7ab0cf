"""Target types, one module each; importing this package registers them all."""

from backend.targets import error, linear, striped, zero

__all__ = ["error", "linear", "striped", "zero"]
