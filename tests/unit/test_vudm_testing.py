"""The pytest plugin's run-once machinery and its registration (no QEMU needed)."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pytest

from guests.errors import GuestError
from guests.image import GuestImage
from vudm_testing.once import image_once, run_dir


def test_plugin_is_registered_as_pytest11_entry_point() -> None:
    names = {e.value for e in importlib.metadata.entry_points(group="pytest11")}
    assert "vudm_testing.pytest_plugin" in names


def test_workers_share_the_run_directory(monkeypatch: pytest.MonkeyPatch,
                                         tmp_path: Path) -> None:
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw1")
    assert run_dir(tmp_path / "popen-gw1") == tmp_path
    monkeypatch.delenv("PYTEST_XDIST_WORKER")
    assert run_dir(tmp_path) == tmp_path


def test_image_is_built_once_per_run(tmp_path: Path) -> None:
    builds: list[int] = []

    def build() -> GuestImage:
        builds.append(1)
        return GuestImage(kernel=tmp_path / "k", initrd=tmp_path / "i")

    first = image_once(tmp_path, build)
    second = image_once(tmp_path, build)
    assert first == second == GuestImage(kernel=tmp_path / "k", initrd=tmp_path / "i")
    assert len(builds) == 1


def test_a_failed_build_is_reported_to_every_worker(tmp_path: Path) -> None:
    def build() -> GuestImage:
        raise GuestError("no kernel package")

    assert image_once(tmp_path, build) == "no kernel package"
    assert image_once(tmp_path, lambda: GuestImage(tmp_path, tmp_path)) == "no kernel package"
