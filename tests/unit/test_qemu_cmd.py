"""The guest's ``-smp``: under TCG the machine must have room for two CPUs, or QEMU drops
the guest's memory barriers and a vhost-user backend can lose its notifications."""

from __future__ import annotations

from pathlib import Path

from guests.image import GuestImage
from guests.qemu_cmd import MachineConfig, qemu_argv


def _smp(accel: str, vcpus: int) -> str:
    image = GuestImage(kernel=Path("/k"), initrd=Path("/i"), cmdline="console=ttyS0")
    argv = qemu_argv(MachineConfig(image=image, accel=accel, vcpus=vcpus),
                     qmp_socket=Path("/q"), agent_socket=Path("/a"), console_log=Path("/c"))
    return argv[argv.index("-smp") + 1]


def test_a_one_cpu_tcg_guest_has_room_for_two() -> None:
    assert _smp("tcg", 1) == "1,maxcpus=2"
    assert _smp("tcg", 4) == "4,maxcpus=4"


def test_kvm_guests_are_left_as_asked() -> None:
    assert _smp("kvm", 1) == "1"
