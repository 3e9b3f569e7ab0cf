"""Target types, one module each; importing this package registers them all."""

from backend.targets import delay as delay
from backend.targets import dust as dust
from backend.targets import error, linear, multipath, striped, zero
from backend.targets import flakey as flakey
from backend.targets import mirror as mirror

__all__ = ["error", "linear", "multipath", "striped", "zero"]
