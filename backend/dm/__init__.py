"""vudm's device-mapper core: tables of targets, mapped devices, the I/O path.

Typical use (the control plane)::

    import backend.targets                      # registers linear, striped, error, zero...
    from backend.dm import MappedDevice, parse_table

    md = MappedDevice("vol0")
    md.create(parse_table("0 2048 linear disk0 0", resolve))
    await md.suspend(noflush=True, timeout=10)
    md.load(parse_table(new_text, resolve))
    await md.resume()

Target authors subclass :class:`Target` and decorate it with ``@register("name")``.
"""

from backend.dm.args import ArgReader, parse_uint
from backend.dm.events import TableEvent, TableEventKind
from backend.dm.mapped_device import DeviceInfo, DeviceState, MappedDevice
from backend.dm.registry import lookup, register, registered
from backend.dm.stacking import MappedBlockDevice
from backend.dm.table import Table, parse_table
from backend.dm.target import (
    Clone,
    DeviceResolver,
    EndIo,
    EndIoResult,
    MapResult,
    StatusType,
    Target,
    TargetContext,
)

__all__ = [
    "ArgReader",
    "Clone",
    "DeviceInfo",
    "DeviceResolver",
    "DeviceState",
    "EndIo",
    "EndIoResult",
    "MapResult",
    "MappedBlockDevice",
    "MappedDevice",
    "StatusType",
    "Table",
    "TableEvent",
    "TableEventKind",
    "Target",
    "TargetContext",
    "lookup",
    "parse_table",
    "parse_uint",
    "register",
    "registered",
]
