"""The scenario library; importing it registers every scenario."""

from . import (  # noqa: F401
    basic,
    failover,
    faults,
    network,
    queues,
    restart,
    seed001,
    stacking,
)
