"""``vudm serve --state-dir`` as a process SIGKILLed and started again: what was
acknowledged comes back (tables, inactive table, SUSPENDED, exports on the same
sockets); SIGTERM drains and exits 0 leaving the state for the next daemon."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

from qemu.qmp import QMPClient

from vudm_testing.daemon import DaemonProcess, run


async def views(c: QMPClient) -> dict[str, Any]:
    dms = await c.execute("query-dm")
    for d in dms:
        del d["event-nr"], d["open-count"]
    exports = await c.execute("query-exports")
    for e in exports:
        # counters since the daemon started, not state
        del e["connected"], e["resubmitted"], e["queue-ios"], e["config-changes"]
    return {"dm": dms, "devs": await c.execute("query-devs"), "exports": exports}


def test_sigkill_then_restart_restores_what_was_acknowledged(tmp_path: Path) -> None:
    disk = tmp_path / "disk.img"
    with disk.open("wb") as f:
        f.truncate(8 << 20)
    state = tmp_path / "state"
    sock = tmp_path / "run" / "e0.sock"

    def daemon() -> DaemonProcess:
        return DaemonProcess(tmp_path / "run", log_path=tmp_path / "vudm.log",
                             extra_args=("--state-dir", str(state)))

    async def main() -> None:
        d = daemon()
        await d.start()
        async with d.client() as c:
            await c.execute("dev-add", {"name": "d0", "uri": f"file:{disk}"})
            await c.execute("dm-create", {"name": "v", "table": "0 8192 linear d0 0"})
            await c.execute("dm-suspend", {"name": "v", "noflush": True})
            await c.execute("dm-load", {"name": "v", "table": "0 16384 linear d0 0"})
            await c.execute("export-add", {"id": "e0", "dm": "v", "socket": str(sock),
                                           "serial": "S"})
            before = await views(c)
        await d.kill()  # SIGKILL: no shutdown code runs
        assert sock.exists()  # the dead daemon's socket is left behind

        d = daemon()
        await d.start()
        try:
            async with d.client() as c:
                assert await views(c) == before
                (v,) = await c.execute("query-dm")
                assert v["state"] == "SUSPENDED" and v["inactive-table"]
        finally:
            assert d.proc is not None
            d.proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(d.proc.wait(), 30) == 0
        assert "draining" in (tmp_path / "vudm.log").read_text()

        # a SIGTERM leaves the state too: the next daemon picks it up
        async with daemon() as d, d.client() as c:
            assert await views(c) == before

    run(main(), timeout=120)
