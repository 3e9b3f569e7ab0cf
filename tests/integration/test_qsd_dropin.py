"""``vudm serve`` where qemu-storage-daemon would be launched: QSD's --blockdev and
--export, listening sockets handed over as fds or by socket activation, QMP optional."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from qemu.qmp import QMPClient

from backend.images import allocate_image
from vudm_testing.handles import GuestHandle, Loop

VUDM = [sys.executable, "-m", "backend.control.cli", "serve"]


def listening(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.listen(1)
    return sock


@contextmanager
def daemon(argv: list[str], *, pass_fds: tuple[int, ...] = (), log: Path,
           activate: tuple[int, ...] = ()) -> Iterator[subprocess.Popen[bytes]]:
    """``vudm serve ARGV`` until its ready line; SIGTERM (as QEMU's qtest ends QSD) after.
    ``activate``: fds handed over as systemd does (at 3, 4, ... with LISTEN_PID)."""
    def like_systemd() -> None:
        # In the child, before exec: fds 3.. and LISTEN_PID (the daemon's own pid).
        for i, fd in enumerate(activate):
            os.dup2(fd, 3 + i)
        os.environ["LISTEN_PID"] = str(os.getpid())

    # (subprocess closes what pass_fds does not list after preexec_fn: list 3.. too)
    at = tuple(range(3, 3 + len(activate)))
    proc = subprocess.Popen([*VUDM, *argv], pass_fds=pass_fds + activate + at,
                            stdout=subprocess.PIPE, stderr=log.open("wb"),
                            preexec_fn=like_systemd if activate else None)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        assert line.startswith("vudm: ready"), f"no ready line: {log.read_text()[-2000:]}"
        yield proc
    finally:
        proc.terminate()
        assert proc.wait(60) == 0, log.read_text()[-2000:]


def test_qtest_style_export_on_an_inherited_fd(vudm_guest: GuestHandle, vudm_loop: Loop,
                                               tmp_path: Path, vudm_workdir: Path) -> None:
    """The command line QEMU's vhost-user-blk qtest gives QSD: the guest connects to the
    socket the starter opened, before vudm is ready, and the disk works."""
    image = tmp_path / "disk.img"
    allocate_image(image, 32 << 20)
    sock = listening(vudm_workdir / "vu.sock")
    qmp = vudm_workdir / "qmp.sock"
    argv = ["--blockdev", f"driver=file,node-name=disk0,filename={image}",
            "--export", f"type=vhost-user-blk,id=disk0,addr.type=fd,addr.str={sock.fileno()},"
                        "node-name=disk0,writable=on,num-queues=2",
            "--qmp", str(qmp)]
    with daemon(argv, pass_fds=(sock.fileno(),), log=tmp_path / "vudm.log"):
        sock.close()
        dev = vudm_guest.attach("q0", vudm_workdir / "vu.sock", num_queues=2)
        out = vudm_guest.sh(f"dd if=/dev/urandom of={dev} bs=64k count=32 oflag=direct"
                            f" && md5sum {dev}")
        assert out.exit_code == 0, out.stderr
        client = QMPClient("test")
        vudm_loop.run(client.connect(str(qmp)))
        try:
            exports = vudm_loop.run(client.execute("query-exports"))
            assert [(e["id"], e["dm"], e["connected"], e["num-queues"]) for e in exports] == [
                ("disk0", "disk0", True, 2)]
            # the export is a mapped device: dm commands work on it
            vudm_loop.run(client.execute("dm-suspend", {"name": "disk0", "noflush": True}))
            vudm_loop.run(client.execute("dm-resume", {"name": "disk0"}))
        finally:
            vudm_loop.run(client.disconnect())
        again = vudm_guest.sh(f"echo 3 > /proc/sys/vm/drop_caches; md5sum {dev}")
        assert again.output.split()[0] == out.output.split()[0]
        vudm_guest.detach("q0")
    assert vudm_guest.io_errors() == []


def test_socket_activation_for_qmp_and_export(vudm_loop: Loop, tmp_path: Path,
                                              vudm_workdir: Path) -> None:
    """systemd's LISTEN_FDS/LISTEN_FDNAMES: QMP and the export on sockets passed at fd
    3 and 4, found by name."""
    qmp_sock = listening(vudm_workdir / "qmp.sock")
    vu_sock = listening(vudm_workdir / "vu.sock")
    argv = ["--blockdev", "driver=null-co,node-name=n0,size=16777216",
            "--export", "type=vhost-user-blk,id=vol0,node-name=n0,addr.type=fd,addr.str=vol0",
            "--qmp", "fd:qmp"]
    os.environ.update(LISTEN_FDS="2", LISTEN_FDNAMES="qmp:vol0")
    try:
        with daemon(argv, log=tmp_path / "vudm.log",
                    activate=(qmp_sock.fileno(), vu_sock.fileno())):
            client = QMPClient("test")
            vudm_loop.run(client.connect(str(vudm_workdir / "qmp.sock")))
            try:
                exports = vudm_loop.run(client.execute("query-exports"))
                assert [(e["id"], e["socket"]) for e in exports] == [("vol0", "fd:4")]
                table = vudm_loop.run(client.execute("query-dm", {"name": "vol0"}))[0]
                assert "0 32768 linear n0 0" in str(table["table"])
            finally:
                vudm_loop.run(client.disconnect())
    finally:
        for var in ("LISTEN_FDS", "LISTEN_FDNAMES", "LISTEN_PID"):
            os.environ.pop(var, None)
        qmp_sock.close()
        vu_sock.close()


def test_a_bad_export_option_fails_the_start_naming_it(tmp_path: Path) -> None:
    proc = subprocess.run([*VUDM, "--blockdev", "driver=null-co,node-name=n0",
                                  "--export", "type=vhost-user-blk,id=e,node-name=n0,"
                                  "addr.type=fd,addr.str=99"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "--export id=e: fd 99 is not an open socket" in proc.stderr
