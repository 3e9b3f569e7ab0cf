"""The ctypes mirrors of libvhost-user's structures match the compiled C layout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from backend.vhost import abi
from backend.vhost.libvhost import NATIVE_DIR

ABI_JSON = NATIVE_DIR / "abi.json"
needs_native = pytest.mark.skipif(not ABI_JSON.exists(), reason="run `make native` first")


@needs_native
def test_ctypes_layout_matches_the_c_probe() -> None:
    assert abi.layout_mismatches(json.loads(ABI_JSON.read_text())) == []


@needs_native
def test_library_loads() -> None:
    from backend.vhost import libvhost

    lib = libvhost.load()
    assert lib.vu_queue_pop.restype is not None  # pointers must not be truncated to int


@needs_native
def test_the_request_paths_untyped_calls_are_the_typed_ones() -> None:
    """The untyped request-path calls are the same C functions, and pop hands the
    element back as a Ptr (a plain restype would turn it into an int, and an int
    passed back untyped is cut to 32 bits)."""
    import ctypes

    from backend.vhost import libvhost

    lib = libvhost.load()

    def addr(f: object) -> int | None:
        return ctypes.cast(f, ctypes.c_void_p).value  # type: ignore[arg-type]

    pairs = [(lib.pop, lib.vu_queue_pop), (lib.push, lib.vu_queue_push),
             (lib.notify, lib.vu_queue_notify), (lib.free_elem, lib.free)]
    for untyped, typed in pairs:
        assert addr(untyped) == addr(typed)
        assert untyped.argtypes is None
    assert lib.pop.restype is libvhost.Ptr


def test_drift_is_reported(tmp_path: Path) -> None:
    drifted = {name: {"sizeof": 1} for name in abi.MIRRORED}
    drifted["VuDev"]["broken"] = 1400
    problems = abi.layout_mismatches(drifted)
    assert "VuDev.broken: ctypes says 1408, C says 1400" in problems
    path = tmp_path / "abi.json"
    path.write_text(json.dumps(drifted))
    with pytest.raises(abi.AbiError, match="ABI drift"):
        abi.check_abi(path)


def test_missing_probe_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(abi.AbiError, match="make native"):
        abi.check_abi(tmp_path / "nope.json")
