"""The scenario library; importing it registers every scenario."""

from . import basic  # noqa: F401
