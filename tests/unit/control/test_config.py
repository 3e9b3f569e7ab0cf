"""vudm serve's TOML config: parsing, refusals naming the entry, applying in order."""

from __future__ import annotations

from pathlib import Path

import pytest
from daemon_in_process import in_process

from backend.control.config import apply_config, load_config
from backend.errors import ConfigError
from vudm_testing.daemon import run


def write(tmp: Path, text: str) -> Path:
    path = tmp / "vudm.toml"
    path.write_text(text)
    return path


def test_entries_become_commands_in_dependency_order(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, """
[qmp]
socket = "/run/x.sock"
[[export]]
id = "e"
dm = "v"
socket = "/tmp/e.sock"
[[dm]]
name = "v"
table = "0 8 zero"
[[device]]
name = "d"
uri = "file:/x"
"""))
    assert cfg.qmp_socket == "/run/x.sock"
    assert [(w, c) for w, c, _ in cfg.commands] == [
        ("device[1]", "dev-add"), ("dm[1]", "dm-create"), ("export[1]", "export-add")]


@pytest.mark.parametrize(("text", "error"), [
    ("[[dm]\n", "config {path}: "),
    ("[[volume]]\nname = 'x'\n", "unknown section 'volume'"),
    ("dm = 5\n", "'dm' must be an array of tables ([[dm]])"),
    ("[qmp]\nport = 4444\n", "[qmp] takes only 'socket'"),
])
def test_malformed_files_are_refused(tmp_path: Path, text: str, error: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert error.format(path=path) in str(e.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="No such file"):
        load_config(tmp_path / "nope.toml")


def test_applying_stops_at_the_first_refusal_and_names_it(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, """
[[dm]]
name = "ok"
table = "0 8 zero"
[[dm]]
name = "bad"
table = "0 8 zero"
size = 3
"""))

    async def main() -> None:
        async with in_process(tmp_path) as (server, c):
            with pytest.raises(ConfigError) as e:
                await apply_config(cfg, server.dispatcher)
            assert str(e.value) == (f"config {cfg.path}: dm[2]: dm-create: unexpected argument"
                                    " 'size' (expected name, table, [uuid], [suspended])")
            assert [d["name"] for d in await c.execute("query-dm")] == ["ok"]

    run(main())
