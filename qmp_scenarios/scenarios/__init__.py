"""The scenario library; importing it registers every scenario."""

from . import basic, seed001  # noqa: F401
