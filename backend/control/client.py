"""Client helpers: a qemu.qmp session to a vudm daemon, and running one command.

vudm is driven with the same ``qemu.qmp.QMPClient`` as QEMU; these helpers only add the
socket discovery (``--qmp`` or ``$VUDM_QMP``) and turn QMP failures into ClientError
with the daemon's own message.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from backend.errors import ClientError

if TYPE_CHECKING:  # qemu.qmp is imported when used: ``vudm serve`` never needs it
    from qemu.qmp import QMPClient

READY = "vudm: ready"
"""The first words of the line ``vudm serve`` prints on stdout once it listens (``vudm:
ready, QMP on <path> (pid <n>)``): what a parent process waits for, never a sleep."""
ENV_SOCKET = "VUDM_QMP"
DEFAULT_SOCKET = "/run/vudm/qmp.sock"


def socket_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The daemon's QMP socket: ``explicit``, else ``$VUDM_QMP``, else the default."""
    return Path(explicit or os.environ.get(ENV_SOCKET) or DEFAULT_SOCKET)


@asynccontextmanager
async def qmp_session(path: str | os.PathLike[str], *, name: str = "vudm-client",
                      timeout: float = 10.0) -> AsyncIterator[QMPClient]:
    """A negotiated QMPClient connected to the daemon at ``path``."""
    from qemu.qmp import QMPClient
    from qemu.qmp.error import QMPError

    client = QMPClient(name)
    try:
        await asyncio.wait_for(client.connect(str(path)), timeout)
    except (OSError, QMPError, TimeoutError) as e:
        raise ClientError(f"cannot connect to vudm at {path}: {e}") from e
    try:
        yield client
    finally:
        await client.disconnect()


async def execute(client: QMPClient, cmd: str,
                  arguments: Mapping[str, object] | None = None) -> Any:
    """Run one command; ClientError carries the daemon's error desc (and its class)."""
    from qemu.qmp import ExecuteError
    from qemu.qmp.error import QMPError

    try:
        return await client.execute(cmd, dict(arguments) if arguments else None)
    except ExecuteError as e:
        raise ClientError(e.error.error.desc, e.error_class) from e
    except QMPError as e:
        raise ClientError(f"{cmd}: {e}") from e
