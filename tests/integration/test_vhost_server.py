"""The vhost-user server's socket path rules: 0600, a live path refused, a stale one reused."""

from __future__ import annotations

import asyncio
import socket
import stat
from pathlib import Path

import pytest

from backend.blockio import Bio, Status
from backend.errors import VhostUserError
from backend.vhost.blk import VhostUserBlkExport
from backend.vhost.libvhost import NATIVE_DIR

pytestmark = pytest.mark.skipif(not (NATIVE_DIR / "libvhost-user.so").exists(),
                                reason="needs `make native`")


class NullSink:
    size_sectors = 2048

    def submit_bio(self, bio: Bio) -> None:
        bio.done(Status.OK)


def test_socket_mode_and_path_in_use(tmp_path: Path) -> None:
    path = tmp_path / "vu.sock"

    async def main() -> None:
        first = VhostUserBlkExport("a", NullSink(), path)
        first.start()
        try:
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
            second = VhostUserBlkExport("b", NullSink(), path)
            with pytest.raises(VhostUserError, match="in use"):
                second.start()
        finally:
            await first.close()
        assert not path.exists()

    asyncio.run(main())


def test_stale_socket_is_reused_and_other_files_refused(tmp_path: Path) -> None:
    stale = tmp_path / "stale.sock"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(stale))
    s.close()  # bound, never listening: what a killed server leaves behind
    regular = tmp_path / "file"
    regular.write_text("not a socket")

    async def main() -> None:
        export = VhostUserBlkExport("a", NullSink(), stale)
        export.start()
        await export.close()
        with pytest.raises(VhostUserError, match="not a socket"):
            VhostUserBlkExport("b", NullSink(), regular).start()

    asyncio.run(main())


def test_too_long_path_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / ("x" * 120 + ".sock")

    async def main() -> None:
        with pytest.raises(VhostUserError, match="cannot listen"):
            VhostUserBlkExport("a", NullSink(), path).start()

    asyncio.run(main())
