"""The hang evidence's eventfd view and its verdict, on real eventfds and processes."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from qmp_scenarios.bench_evidence import shared_eventfds, signal_eventfd, verdict


@pytest.fixture
def holder() -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """A child holding an eventfd it inherited (as QEMU and a backend share a vring's),
    and that eventfd's number here (and in the child)."""
    fd = os.eventfd(0, os.EFD_NONBLOCK)
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                             stdin=subprocess.PIPE, pass_fds=(fd,))
    yield child, fd
    child.kill()
    child.wait()
    assert child.stdin is not None
    child.stdin.close()
    os.close(fd)


def test_the_eventfds_two_processes_share_are_found_with_their_count(
        holder: tuple[subprocess.Popen[bytes], int]) -> None:
    child, fd = holder
    os.eventfd_write(fd, 3)
    shared = shared_eventfds(os.getpid(), child.pid)
    mine = [v for k, v in shared.items() if k.isdigit() and v["backend_fd"] == fd]
    assert len(mine) == 1 and mine[0]["count"] == 3
    assert str(fd) not in [str(v["qemu_fd"]) for v in shared["qemu_only_unread"].values()]
    private = os.eventfd(0)
    try:
        os.eventfd_write(private, 2)
        shared = shared_eventfds(child.pid, os.getpid())  # this process as the "QEMU"
        assert private not in [v["backend_fd"] for k, v in shared.items() if k.isdigit()]
        assert [v["count"] for v in shared["qemu_only_unread"].values()
                if v["qemu_fd"] == private] == [2]
    finally:
        os.close(private)


def test_signalling_another_process_eventfd_reaches_the_same_eventfd(
        holder: tuple[subprocess.Popen[bytes], int]) -> None:
    child, fd = holder
    signal_eventfd(child.pid, fd)  # the child holds it under the same number
    assert os.eventfd_read(fd) == 1


def test_the_verdict_names_the_party_that_stopped() -> None:
    ring = {"posted_not_returned": 0, "avail_idx": 7, "used_idx": 7}
    assert verdict({"virtqueue": ring | {"posted_not_returned": 3},
                    "release_probe": {}}).startswith("backend: 3 requests")
    assert verdict({"virtqueue": ring, "release_probe": {"released_by": 5}}).startswith(
        "notification lost")
    assert verdict({"virtqueue": ring, "release_probe": {"steps": []}}).startswith("guest:")
    assert verdict({"virtqueue": {"error": "TimeoutError"}}).startswith("unknown")
