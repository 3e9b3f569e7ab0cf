"""The daemon's log format, with every line cut to a bounded length.

Whatever a client sends may end up in a log message (a refused name, a table line);
a formatter that cuts each record keeps a 1 MiB argument from becoming a 1 MiB log line,
whichever module logged it. Tracebacks are kept whole: they are ours, not the client's.
"""

from __future__ import annotations

import logging

MAX_LINE = 2000
"""Longest logged message, in characters."""

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class BoundedFormatter(logging.Formatter):
    """A Formatter whose message part is at most :data:`MAX_LINE` characters."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        message = record.message
        if len(message) > MAX_LINE:
            record.message = (f"{message[:MAX_LINE]}... [{len(message) - MAX_LINE}"
                              " more characters cut]")
        return super().formatMessage(record)


def setup(level: str) -> None:
    """Log to stderr at ``level`` with bounded lines."""
    handler = logging.StreamHandler()
    handler.setFormatter(BoundedFormatter(FORMAT))
    logging.basicConfig(level=level.upper(), handlers=[handler])
