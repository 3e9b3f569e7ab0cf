"""The QEMU command line of a vudm guest (pure: builds argv, starts nothing).

Guest RAM is a shared memfd (vhost-user backends map it), disks sit behind PCIe root
ports (q35 hotplugs only there), and the agent's virtio-serial port is wired to a unix
socket the host listens on.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .image import GuestImage

AGENT_PORT_NAME = "org.vudm.agent"
# Root port i sits on pcie.0 slot FIRST_SLOT + i, so a disk's guest sysfs path names it.
FIRST_SLOT = 0x10
MAX_SLOTS = 16


@dataclass(frozen=True)
class VhostUserDisk:
    """A vhost-user-blk disk: QEMU connects to ``socket_path`` (the backend listens)."""

    disk_id: str
    socket_path: Path
    num_queues: int = 1
    # Seconds between QEMU's reconnect attempts after the backend goes away (None: never).
    reconnect: int | None = None

    @property
    def chardev_id(self) -> str:
        return f"chr-{self.disk_id}"


@dataclass(frozen=True)
class MachineConfig:
    """Everything that shapes one QEMU guest."""

    image: GuestImage
    memory_mb: int = 512
    vcpus: int = 1
    accel: str = "tcg"
    hotplug_slots: int = 8
    boot_disks: Sequence[tuple[int, VhostUserDisk]] = field(default_factory=tuple)


def opt_value(value: object) -> str:
    """A value inside a QEMU ``-chardev``/``-device`` option string (commas doubled)."""
    return str(value).replace(",", ",,")


def root_port_id(slot: int) -> str:
    return f"rp{slot}"


def root_port_pci_address(slot: int) -> str:
    """The guest's PCI address of root port ``slot`` (as it appears in sysfs paths)."""
    return f"0000:00:{FIRST_SLOT + slot:02x}.0"


def choose_accel() -> str:
    """``$VUDM_ACCEL`` if set, else kvm when the CPU has VMX/SVM and /dev/kvm opens, else tcg.

    /dev/kvm can exist without usable virtualization (nested setups without the CPU
    flags); checking the flags is cheap and avoids a boot that never finishes.
    """
    forced = os.environ.get("VUDM_ACCEL")
    if forced:
        return forced
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as cpuinfo:
            flags = next((line for line in cpuinfo if line.startswith("flags")), "")
        if not {"vmx", "svm"} & set(flags.split()):
            return "tcg"
        fd = os.open("/dev/kvm", os.O_RDWR)
        os.close(fd)
    except OSError:
        return "tcg"
    return "kvm"


def chardev_socket_args(disk: VhostUserDisk) -> str:
    opts = f"socket,id={disk.chardev_id},path={opt_value(disk.socket_path)}"
    if disk.reconnect is not None:
        opts += f",reconnect={disk.reconnect}"
    return opts


def vhost_user_blk_device(disk: VhostUserDisk, slot: int) -> dict[str, object]:
    """device_add arguments (also rendered as -device for boot-time disks)."""
    return {
        "driver": "vhost-user-blk-pci",
        "id": disk.disk_id,
        "chardev": disk.chardev_id,
        "num-queues": disk.num_queues,
        "bus": root_port_id(slot),
    }


def smp_option(config: MachineConfig) -> str:
    """``-smp``: ``vcpus`` CPUs, and under TCG room for at least two.

    Under TCG a guest whose machine can hold only one CPU gets no memory barriers: QEMU
    translates its fences and locked instructions for a single observer (``tcg_gen_mb``
    emits nothing without CF_PARALLEL, which ``tcg_cpu_init_cflags`` sets only for
    max_cpus > 1; QEMU 7.2, accel/tcg). A vhost-user backend is a second observer of
    guest memory, and virtio's notification handshake is a Dekker pair: the guest writes
    ``used_event`` then reads ``used->idx``, the backend writes ``used->idx`` then reads
    ``used_event``, each with a full barrier in between. Without the guest's barrier
    both can read the old value: the backend skips the interrupt and the guest sleeps
    with every request answered. (Caught on qemu-storage-daemon in ``make bench``:
    avail == used, ``used_event`` 32 behind, and signalling the call eventfd from
    outside let the guest finish.) ``maxcpus`` of 2 makes QEMU emit the barriers; the
    guest still runs ``vcpus`` CPUs.
    """
    if config.accel != "tcg":
        return str(config.vcpus)
    return f"{config.vcpus},maxcpus={max(config.vcpus, 2)}"


def qemu_argv(
    config: MachineConfig, *, qmp_socket: Path, agent_socket: Path, console_log: Path
) -> list[str]:
    """The full qemu-system-x86_64 argv; QEMU connects to both sockets as a client."""
    accel = "tcg,thread=multi" if config.accel == "tcg" and config.vcpus > 1 else config.accel
    mem = f"{config.memory_mb}M"
    smp = smp_option(config)
    argv = [
        "qemu-system-x86_64",
        "-name", "vudm-guest,debug-threads=on",
        "-accel", accel,
        "-machine", "q35,memory-backend=mem",
        "-object", f"memory-backend-memfd,id=mem,size={mem},share=on",
        "-m", mem,
        "-smp", smp,
        "-cpu", "max" if config.accel == "tcg" else "host",
        "-nodefaults", "-no-user-config", "-display", "none", "-vga", "none",
        "-no-reboot",
        "-kernel", str(config.image.kernel),
        "-initrd", str(config.image.initrd),
        "-append", config.image.cmdline,
        "-chardev", f"file,id=console,path={opt_value(console_log)}",
        "-serial", "chardev:console",
        "-chardev", f"socket,id=qmp,path={opt_value(qmp_socket)}",
        "-mon", "chardev=qmp,mode=control",
        "-device", "virtio-serial-pci,id=vser,bus=pcie.0,addr=0x8",
        "-chardev", f"socket,id=agent,path={opt_value(agent_socket)}",
        "-device", f"virtserialport,bus=vser.0,chardev=agent,name={AGENT_PORT_NAME}",
    ]  # fmt: skip
    for slot in range(config.hotplug_slots):
        argv += [
            "-device",
            f"pcie-root-port,id={root_port_id(slot)},bus=pcie.0,"
            f"addr={FIRST_SLOT + slot:#x},chassis={slot + 1}",
        ]
    for slot, disk in config.boot_disks:
        device = vhost_user_blk_device(disk, slot)
        options = [str(device.pop("driver"))] + [f"{k}={opt_value(v)}" for k, v in device.items()]
        argv += ["-chardev", chardev_socket_args(disk), "-device", ",".join(options)]
    return argv
