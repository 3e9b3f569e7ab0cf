"""Reading the tails of a guest's log files for error messages."""

from __future__ import annotations

from pathlib import Path


def tail(path: Path, lines: int = 30, max_bytes: int = 64 * 1024) -> str:
    """The last ``lines`` lines of ``path`` ("" if it does not exist yet)."""
    try:
        with path.open("rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            data = f.read()
    except FileNotFoundError:
        return ""
    text = data.decode(errors="replace").replace("\r", "")
    return "\n".join(text.splitlines()[-lines:])


def diagnostics(console_log: Path, qemu_log: Path, lines: int = 30) -> str:
    """A block to append to a GuestError: the console tail and QEMU's own messages."""
    parts = []
    console = tail(console_log, lines)
    parts.append(f"--- guest console ({console_log}, last {lines} lines) ---\n{console}")
    qemu = tail(qemu_log, 10)
    if qemu.strip():
        parts.append(f"--- qemu ({qemu_log}) ---\n{qemu}")
    return "\n" + "\n".join(parts)
