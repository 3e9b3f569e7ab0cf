"""The ``vudm serve --config FILE`` file: devices, mapped devices and exports to create.

TOML, one array of tables per kind; each entry holds exactly the arguments of the QMP
command that creates it, so a config is validated by the same schemas and a daemon
restarted from it comes back in the state those commands would build::

    state-dir = "/var/lib/vudm/state" # optional; --state-dir wins (a saved state there
                                      # wins over the rest of this file)
    [qmp]
    socket = "/run/vudm/qmp.sock"     # optional; --qmp wins

    [[device]]                        # dev-add
    name = "disk0"
    uri = "file:/var/lib/vudm/disk0.img"

    [[dm]]                            # dm-create
    name = "lin0"
    table = "0 2097152 linear disk0 0"

    [[export]]                        # export-add
    id = "exp0"
    dm = "lin0"
    socket = "/run/vudm/lin0.sock"
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from backend.errors import CommandError, ConfigError

from .qmp import Dispatcher

__all__ = ["SECTIONS", "Config", "ConfigError", "apply_config", "load_config"]

SECTIONS = {"device": "dev-add", "dm": "dm-create", "export": "export-add"}
"""Config array -> the command each of its entries is, in the order they are applied."""


@dataclass
class Config:
    """A parsed config: the QMP socket (if given) and the commands to run, in order."""

    path: Path
    qmp_socket: str | None = None
    state_dir: str | None = None
    commands: list[tuple[str, str, dict[str, object]]] = field(default_factory=list)
    """(where, command, arguments); ``where`` is e.g. ``dm[2]`` for messages."""


def load_config(path: str | Path) -> Config:
    """Parse a config file; ConfigError says which entry and what is wrong."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except OSError as e:
        raise ConfigError(f"config {path}: {e.strerror}") from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config {path}: {e}") from e
    config = Config(path)
    unknown = sorted(set(raw) - set(SECTIONS) - {"qmp", "state-dir"})
    if unknown:
        raise ConfigError(f"config {path}: unknown section {unknown[0]!r}"
                          f" (expected state-dir, qmp, {', '.join(SECTIONS)})")
    if "state-dir" in raw:
        if not isinstance(raw["state-dir"], str) or not raw["state-dir"]:
            raise ConfigError(f"config {path}: state-dir: expected a non-empty string")
        config.state_dir = raw["state-dir"]
    qmp = raw.get("qmp", {})
    if not isinstance(qmp, Mapping) or set(qmp) - {"socket"}:
        raise ConfigError(f"config {path}: [qmp] takes only 'socket'")
    if "socket" in qmp:
        if not isinstance(qmp["socket"], str):
            raise ConfigError(f"config {path}: [qmp] socket: expected string")
        config.qmp_socket = qmp["socket"]
    for section, cmd in SECTIONS.items():
        entries = raw.get(section, [])
        if not isinstance(entries, list):
            raise ConfigError(f"config {path}: {section!r} must be an array of tables"
                              f" ([[{section}]])")
        for i, entry in enumerate(entries, 1):
            if not isinstance(entry, Mapping):
                raise ConfigError(f"config {path}: {section}[{i}] is not a table")
            config.commands.append((f"{section}[{i}]", cmd, dict(entry)))
    return config


async def apply_config(config: Config, dispatcher: Dispatcher) -> None:
    """Run the config's commands in order; stop at the first refusal."""
    for where, cmd, arguments in config.commands:
        try:
            await dispatcher.execute(cmd, arguments)
        except CommandError as e:
            raise ConfigError(f"config {config.path}: {where}: {e.desc}") from e
