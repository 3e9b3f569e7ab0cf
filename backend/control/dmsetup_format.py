"""Text output in dmsetup's formats, from query-dm / query-devs / query-exports entries.

People compare ``vudm table`` with ``dmsetup table`` by eye and scripts parse both, so
these follow dmsetup byte for byte where the concept exists: ``table``/``status`` lines
are ``"%llu %llu %s %s"`` (start, length, type, params: note the space before empty
params), every line prefixed by ``name: `` when all devices are listed, an empty line
for a device without a live table, and ``info`` in dmsetup's long form with a blank
line after each device. vudm has no kernel device numbers; it reports major 253 and a
per-daemon minor so the fields keep their shape.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

NO_DEVICES = "No devices found"
DM_MAJOR = 253
"""What ``info`` reports as the major number (there is no kernel device)."""
READ_AHEAD = 256
"""What ``info`` reports as read-ahead, in sectors (dmsetup's usual default)."""

Entry = Mapping[str, Any]


def _target_line(line: str) -> str:
    words = line.split(maxsplit=3)
    params = words[3] if len(words) > 3 else ""
    return f"{words[0]} {words[1]} {words[2]} {params}"


def table_lines(entries: Sequence[Entry], key: str, *, all_devices: bool) -> list[str]:
    """dmsetup table/status: ``key`` is ``table``, ``status`` (or ``inactive``)."""
    if all_devices and not entries:
        return [NO_DEVICES]
    out: list[str] = []
    for entry in entries:
        text = entry["info"]["inactive"] if key == "inactive" else entry[key]
        prefix = f"{entry['name']}: " if all_devices else ""
        lines = [ln for ln in (text or "").splitlines() if ln.strip()]
        if not lines:
            out.append(prefix)
        out.extend(prefix + _target_line(ln) for ln in lines)
    return out


def tables_present(entry: Entry) -> str:
    live, inactive = entry["live-table"], entry["inactive-table"]
    if live and inactive:
        return "LIVE & INACTIVE"
    if live:
        return "LIVE"
    if inactive:
        return "INACTIVE"
    return "None"


def info_lines(entries: Sequence[Entry], *, all_devices: bool) -> list[str]:
    """dmsetup info (long form)."""
    if all_devices and not entries:
        return [NO_DEVICES]
    out: list[str] = []
    for e in entries:
        info = e["info"]
        state = e["state"] + (" (READ-ONLY)" if info["read-only"] else "")
        out += [
            f"Name:              {e['name']}",
            f"State:             {state}",
            f"Read Ahead:        {info['read-ahead']}",
            f"Tables present:    {tables_present(e)}",
            f"Open count:        {e['open-count']}",
            f"Event number:      {e['event-nr']}",
            f"Major, minor:      {info['major']}, {info['minor']}",
            f"Number of targets: {info['targets']}",
        ]
        if e["uuid"]:
            out.append(f"UUID: {e['uuid']}")
        out.append("")
    return out


def ls_lines(entries: Sequence[Entry]) -> list[str]:
    """dmsetup ls: ``name<TAB>(major:minor)``."""
    if not entries:
        return [NO_DEVICES]
    return [f"{e['name']}\t({e['info']['major']}:{e['info']['minor']})" for e in entries]


def columns(rows: Sequence[Sequence[object]], header: Sequence[str]) -> list[str]:
    """A plain left-aligned table (dev ls, export ls: dmsetup has no such verbs)."""
    cells = [[str(c) for c in header], *[[str(c) for c in r] for r in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
            for r in cells]
