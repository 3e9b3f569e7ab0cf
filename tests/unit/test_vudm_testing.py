"""The pytest plugin's run-once machinery, its registration, and the short socket directory
the rig, the plugin and the avocado base class share (no QEMU needed)."""

from __future__ import annotations

import importlib.metadata
import os
import tempfile
from pathlib import Path

import pytest

from guests.errors import GuestError
from guests.image import GuestImage
from qmp_scenarios import rig
from qmp_scenarios.rig import short_run_dir
from vudm_testing.once import image_once, run_dir

pytest_plugins = ("pytester",)


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


@pytest.fixture
def own_tmp(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A temp dir of the test's own for ``tempfile``: a ``vudm-rig-*`` left behind shows
    there, and never another test's."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    return tmp


def _too_long_for_sockets(monkeypatch: pytest.MonkeyPatch, too_long: bool) -> None:
    """Every work dir is too long (or none is), whatever the length of tmp_path."""
    monkeypatch.setattr(rig, "_SUN_PATH_BUDGET", 0 if too_long else 4096)


def test_a_short_workdir_keeps_its_run_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                           own_tmp: Path) -> None:
    _too_long_for_sockets(monkeypatch, False)
    with short_run_dir(tmp_path / "w") as run:
        assert run == tmp_path / "w" / "run" and run.is_dir() and not run.is_symlink()
    assert run.is_dir()  # the caller's, with its work dir
    assert not list(own_tmp.iterdir())


def test_a_long_workdirs_short_run_dir_is_removed_on_exit(monkeypatch: pytest.MonkeyPatch,
                                                         tmp_path: Path, own_tmp: Path) -> None:
    _too_long_for_sockets(monkeypatch, True)
    link = tmp_path / "w" / "run"
    with pytest.raises(RuntimeError), short_run_dir(tmp_path / "w") as run:
        assert run.parent == own_tmp and link.resolve() == run
        (run / "qmp.sock").write_text("")
        raise RuntimeError("a failed test")
    assert not list(own_tmp.iterdir())
    assert not os.path.lexists(link)


def test_a_run_entry_it_did_not_make_is_left(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                             own_tmp: Path) -> None:
    _too_long_for_sockets(monkeypatch, True)
    theirs = tmp_path / "w" / "run"
    theirs.mkdir(parents=True)
    with short_run_dir(tmp_path / "w") as run:
        assert run.parent == own_tmp
    assert theirs.is_dir() and not list(own_tmp.iterdir())


def test_the_pytest_fixture_removes_its_short_run_dir(monkeypatch: pytest.MonkeyPatch,
                                                      own_tmp: Path,
                                                      pytester: pytest.Pytester) -> None:
    _too_long_for_sockets(monkeypatch, True)
    pytester.makepyfile("""
        import tempfile
        from pathlib import Path

        def test_sockets_go_there(vudm_workdir):
            assert vudm_workdir.parent == Path(tempfile.gettempdir())
            (vudm_workdir / "qmp.sock").write_text("")
    """)
    pytester.runpytest_inprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)
    assert not list(own_tmp.iterdir())


def test_avocado_tests_remove_their_short_run_dir(monkeypatch: pytest.MonkeyPatch,
                                                  tmp_path: Path, own_tmp: Path) -> None:
    from vudm_testing.avocado_test import VudmTest

    _too_long_for_sockets(monkeypatch, True)

    class Empty(VudmTest):
        def test(self) -> None:
            pass

    test = Empty(methodName="test", base_logdir=str(tmp_path / "logs"))
    test.setUp()
    assert test.run_dir.parent == own_tmp
    test.tearDown()
    assert not list(own_tmp.glob("vudm-rig-*"))
