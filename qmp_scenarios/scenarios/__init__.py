"""The scenario library; importing it registers every scenario."""

from . import basic, failover, network, restart, seed001  # noqa: F401
