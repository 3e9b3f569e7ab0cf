"""Command argument schemas, and the validation every command passes before it runs.

A schema is a tuple of :class:`Arg`, in QAPI's spirit: a kebab-case name, a JSON type,
whether it is optional, bounds, and an optional check of the value's form (a name, say).
``validate`` checks a QMP ``arguments`` object against it, refusing missing, unknown,
wrongly typed and out-of-limit members with a message naming the command and the
member, and returns the values keyed by Python names (``event-nr`` -> ``event_nr``) with
defaults filled in.

The limits of DESIGN "Input limits" hold for every argument whatever its schema says
(``backend/limits.py``): a string has no NUL and no lone surrogate, an integer fits in 63
bits, a number is finite and at most :data:`~backend.limits.MAX_SECONDS`. So no handler
ever sees a value that would make Python raise instead of the daemon answering.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from backend.errors import CommandError, LimitError

from ..limits import MAX_SECONDS, MAX_U63, check_text, show

Check = Callable[[Any], object]
"""A check of an argument's form: raises LimitError (or ValueError) saying what is wrong."""


class JSONType(enum.Enum):
    """The JSON types an argument may have (QAPI's names)."""

    STR = "str"
    INT = "int"
    BOOL = "bool"
    NUMBER = "number"

    def accepts(self, value: object) -> bool:
        # bool is an int in Python but not in JSON: keep them apart.
        if self is JSONType.STR:
            return isinstance(value, str)
        if self is JSONType.BOOL:
            return isinstance(value, bool)
        if self is JSONType.INT:
            return isinstance(value, int) and not isinstance(value, bool)
        return isinstance(value, int | float) and not isinstance(value, bool)

    @property
    def json_name(self) -> str:
        return {"str": "string", "int": "integer", "bool": "boolean", "number": "number"}[
            self.value]


@dataclass(frozen=True)
class Arg:
    """One member of a command's ``arguments``."""

    name: str
    type: JSONType
    optional: bool = False
    default: Any = None
    minimum: int | float | None = None
    maximum: int | float | None = None
    check: Check | None = None
    doc: str = ""

    @property
    def py_name(self) -> str:
        return self.name.replace("-", "_")

    def describe(self) -> dict[str, object]:
        """This argument as query-commands shows it."""
        out: dict[str, object] = {"name": self.name, "type": self.type.value,
                                  "optional": self.optional}
        if self.default is not None:
            out["default"] = self.default
        return out


Schema = Sequence[Arg]


def json_type_name(value: object) -> str:
    """The JSON name of a value's type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def validate(command: str, schema: Schema, arguments: Mapping[str, object]) -> dict[str, Any]:
    """Check ``arguments`` against ``schema``; CommandError names the first problem."""
    known = {a.name for a in schema}
    extra = sorted(k for k in arguments if k not in known)
    if extra:
        raise CommandError(f"{command}: unexpected argument {extra[0]!r}"
                           f" (expected {_expected(schema)})")
    out: dict[str, Any] = {}
    for arg in schema:
        if arg.name not in arguments:
            if not arg.optional:
                raise CommandError(f"{command}: missing argument {arg.name!r}")
            out[arg.py_name] = arg.default
            continue
        value = arguments[arg.name]
        if not arg.type.accepts(value):
            raise CommandError(f"{command}: {arg.name!r}: expected {arg.type.json_name},"
                               f" got {json_type_name(value)}")
        if arg.type is JSONType.STR and not arg.optional and value == "":
            raise CommandError(f"{command}: {arg.name!r}: must not be empty")
        try:
            _check_limits(arg, value)
            if arg.check is not None:
                arg.check(value)
        except (LimitError, ValueError) as e:
            raise CommandError(f"{command}: {arg.name!r}: {str(e)[:500]}") from None
        out[arg.py_name] = value
    return out


def _check_limits(arg: Arg, value: Any) -> None:
    """The limits every argument of its type obeys, then the argument's own bounds."""
    if isinstance(value, str):
        check_text(value)
        return
    if isinstance(value, bool):
        return
    if isinstance(value, float) and not math.isfinite(value):
        raise LimitError(f"{value} is not a finite number")
    upper = arg.maximum
    if upper is None:
        upper = MAX_U63 if arg.type is JSONType.INT else MAX_SECONDS
    lower = arg.minimum if arg.minimum is not None else -MAX_U63
    if value < lower:
        raise LimitError(f"must be at least {lower}, got {show(value)}")
    if value > upper:
        raise LimitError(f"must be at most {upper}, got {show(value)}")


def _expected(schema: Schema) -> str:
    if not schema:
        return "no arguments"
    return ", ".join(a.name if not a.optional else f"[{a.name}]" for a in schema)
