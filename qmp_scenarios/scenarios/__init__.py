"""The scenario library; importing it registers every scenario."""

from . import basic, failover, seed001  # noqa: F401
