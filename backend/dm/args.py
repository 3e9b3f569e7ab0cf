"""Reading a target's table arguments, like the kernel's ``dm_arg_set`` helpers.

Every failure is a TableError whose reason says which argument was wrong and why; the
table parser adds the line number.
"""

from __future__ import annotations

from collections.abc import Sequence

from backend.errors import LimitError, TableError
from backend.limits import parse_u63


def parse_uint(text: str, what: str, minimum: int = 0, maximum: int | None = None) -> int:
    """``text`` as a decimal integer of ASCII digits in [minimum, maximum] (and in 63
    bits whatever ``maximum`` says); TableError naming ``what``."""
    try:
        value = parse_u63(text, what)
    except LimitError as e:
        raise TableError(str(e)) from None
    if value < minimum or (maximum is not None and value > maximum):
        upper = "" if maximum is None else f"..{maximum}"
        raise TableError(f"invalid {what}: {value} is outside {minimum}{upper}")
    return value


class ArgReader:
    """Consumes arguments in order: ``next``, ``next_uint``, ``next_group``, ``finish``."""

    def __init__(self, args: Sequence[str]) -> None:
        self._args = list(args)
        self._pos = 0

    @property
    def remaining(self) -> int:
        return len(self._args) - self._pos

    def peek(self) -> str | None:
        return self._args[self._pos] if self.remaining else None

    def next(self, what: str) -> str:
        """The next argument; TableError("not enough arguments: expected <what>")."""
        if not self.remaining:
            raise TableError(f"not enough arguments: expected {what}")
        arg = self._args[self._pos]
        self._pos += 1
        return arg

    def next_uint(self, what: str, minimum: int = 0, maximum: int | None = None) -> int:
        return parse_uint(self.next(what), what, minimum, maximum)

    def next_group(self, what: str) -> list[str]:
        """A count-prefixed group (``<#args> <args>...``, dm_read_arg_group)."""
        count = self.next_uint(f"number of {what}")
        if count > self.remaining:
            raise TableError(
                f"not enough arguments: {count} {what} announced, {self.remaining} left"
            )
        return [self.next(what) for _ in range(count)]

    def finish(self) -> None:
        """TableError if arguments are left over."""
        if self.remaining:
            raise TableError(f"too many arguments: unexpected {self._args[self._pos]!r}")
