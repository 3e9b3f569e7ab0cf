"""The scenario library; importing it registers every scenario."""

from . import (  # noqa: F401
    basic,
    distro,
    failover,
    faults,
    interrupted,
    network,
    queues,
    restart,
    seed000,
    seed001,
    seed003,
    seed004,
    stacking,
    table_swap,
)
