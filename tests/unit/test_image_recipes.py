"""The image recipes' build caches are keyed by what built them: a cached fio, dmsetup or
dm-dust.ko is reused only while its recipe and images/lib.sh, the helpers every recipe
sources, are unchanged. Run on a copy of images/, with bash; nothing is built."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

IMAGES = Path(__file__).resolve().parents[2] / "images"
CACHED = {"fio.sh": ("fio", "fio"), "dmsetup.sh": ("dmsetup", "lvm2")}
"""Recipes whose cache lookup comes first (``RECIPE CACHE SRC VERSION``): the binary and
the source package."""


@pytest.fixture
def images(tmp_path: Path) -> Path:
    copy = tmp_path / "images"
    shutil.copytree(IMAGES, copy)
    return copy


def key(images: Path, recipe: str) -> str:
    out = subprocess.run(["bash", "-c", '. "$1/lib.sh" && recipe_key "$1/$2"', "-",
                          str(images), recipe],
                         check=True, capture_output=True, text=True, timeout=30).stdout
    return out.strip()


def append(path: Path, line: str) -> None:
    path.write_text(path.read_text() + line)


@pytest.mark.parametrize("recipe", ["fio.sh", "dmsetup.sh", "dm.sh"])
def test_the_key_follows_the_recipe_and_lib_sh_and_nothing_else(images: Path,
                                                                recipe: str) -> None:
    first = key(images, recipe)
    assert re.fullmatch(r"[0-9a-f]{12}", first)
    append(images / "modules.list", "# another module\n")
    append(images / "initramfs.sh", "# another step\n")
    assert key(images, recipe) == first
    append(images / "lib.sh", "# a changed helper\n")
    second = key(images, recipe)
    assert second != first
    append(images / recipe, "# a changed recipe\n")
    assert key(images, recipe) not in (first, second)


@pytest.mark.parametrize("recipe", sorted(CACHED))
def test_a_recipe_reuses_only_what_its_key_names(images: Path, tmp_path: Path,
                                                 recipe: str) -> None:
    """The dry run: a binary cached under the key is printed and nothing is built; after a
    change to lib.sh the recipe goes on to build (and stops there: its source tree is
    marked unpacked but empty)."""
    binary, source = CACHED[recipe]
    cache, src = tmp_path / "cache", tmp_path / "src"
    cached = cache / binary / f"1.0-{key(images, recipe)}" / binary
    cached.parent.mkdir(parents=True)
    cached.write_text("#!/bin/sh\n")
    cached.chmod(0o755)
    (src / f"{source}-1.0").mkdir(parents=True)
    (src / f"{source}-1.0" / ".vudm-unpacked").touch()

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", str(images / recipe), str(cache), str(src), "1.0"],
                              capture_output=True, text=True, timeout=30)

    hit = run()
    assert (hit.returncode, hit.stdout.strip()) == (0, str(cached)), hit.stderr
    append(images / "lib.sh", "# a changed helper\n")
    miss = run()
    assert miss.returncode != 0 and str(cached) not in miss.stdout
    assert f"building static {binary}" in miss.stderr, miss.stderr


def test_every_cached_recipe_keys_by_recipe_key() -> None:
    """A recipe hashing only itself would keep a binary built by an older lib.sh."""
    for recipe in sorted(IMAGES.glob("*.sh")):
        text = recipe.read_text()
        assert "sha256sum \"${BASH_SOURCE[0]}\"" not in text, recipe.name
        if "recipe=" in text:
            assert 'recipe=$(recipe_key "${BASH_SOURCE[0]}")' in text, recipe.name
