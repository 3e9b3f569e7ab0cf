"""qemu-storage-daemon's --blockdev/--export as `vudm serve` takes them, inherited
listening sockets, socket activation, and the feature bits QSD offers."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from backend.control.listeners import adopt, systemd_fds
from backend.control.qsd_args import Export, parse_blockdev, parse_export, parse_keyval
from backend.errors import ConfigError
from backend.vhost.virtio_blk import (
    CONFIG,
    CONFIG_WCE_OFFSET,
    F_CONFIG_WCE,
    F_TOPOLOGY,
    BlkGeometry,
)


def test_keyval_with_an_escaped_comma() -> None:
    assert parse_keyval("driver=file,filename=/a,,b,cache.direct=on", "--blockdev") == {
        "driver": "file", "filename": "/a,b", "cache.direct": "on"}


@pytest.mark.parametrize(("text", "uri"), [
    ("driver=file,node-name=disk0,filename=/tmp/qtest.abc", "file:/tmp/qtest.abc"),
    ("driver=file,node-name=d,filename=/x.img,aio=native,cache.direct=on", "file:/x.img"),
    ("driver=nbd,node-name=p,server.type=unix,server.path=/s.sock,export=disk",
     "nbd+unix:///disk?socket=/s.sock"),
    ("driver=nbd,node-name=p,server.type=inet,server.host=127.0.0.1,server.port=10809",
     "nbd://127.0.0.1:10809/"),
    ("driver=null-co,node-name=n,size=67108864", "null:67108864"),
])
def test_blockdev_drivers_become_device_uris(text: str, uri: str) -> None:
    assert parse_blockdev(text).uri == uri


@pytest.mark.parametrize(("text", "named"), [
    ("driver=qcow2,node-name=d,file=f", "unsupported driver"),
    ("driver=file,filename=/x", "missing node-name="),
    ("driver=file,node-name=d,filename=/x,bogus=1", "does not take 'bogus'"),
    ("driver=file,node-name=d,filename=/x,read-only=maybe", "read-only='maybe'"),
    ("driver=file,node-name=d,filename", "'filename' is not KEY=VALUE"),
])
def test_bad_blockdevs_are_refused_naming_what_is_wrong(text: str, named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        parse_blockdev(text)


def test_export_as_qemus_qtest_passes_it() -> None:
    text = ("type=vhost-user-blk,id=disk0,addr.type=fd,addr.str=7,node-name=disk0,"
            "writable=on,num-queues=2")
    assert parse_export(text) == Export("disk0", "disk0", "fd:7", True, 2)


def test_export_on_a_path_and_by_socket_activation_name() -> None:
    assert parse_export("type=vhost-user-blk,id=e,node-name=n,addr.type=unix,"
                        "addr.path=/run/e.sock").socket == "/run/e.sock"
    assert parse_export("type=vhost-user-blk,id=e,node-name=n,addr.type=fd,addr.str=vol",
                        {"vol": 4}).socket == "fd:4"


@pytest.mark.parametrize(("text", "named"), [
    ("type=nbd,id=e,node-name=n", "only vhost-user-blk"),
    ("type=vhost-user-blk,id=e,node-name=n,addr.type=inet,addr.host=x", "addr.type='inet'"),
    ("type=vhost-user-blk,id=e,node-name=n,addr.type=fd,addr.str=vol", "addr.str='vol'"),
    ("type=vhost-user-blk,id=e,node-name=n,addr.type=unix,addr.path=/p,num-queues=0",
     "num-queues='0'"),
    ("type=vhost-user-blk,id=e,node-name=n,addr.type=unix,addr.path=/p,"
     "logical-block-size=4096", "logical-block-size"),
])
def test_bad_exports_are_refused_naming_what_is_wrong(text: str, named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        parse_export(text)


def test_only_a_listening_unix_socket_is_adopted(tmp_path: Path) -> None:
    listening = socket.socket(socket.AF_UNIX)
    listening.bind(str(tmp_path / "s"))
    listening.listen(1)
    adopted = adopt(os.dup(listening.fileno()), "--export id=e")
    assert not os.get_inheritable(adopted.fileno())
    adopted.close()
    idle = socket.socket(socket.AF_UNIX)
    with pytest.raises(ConfigError, match="not listening"):
        adopt(idle.fileno(), "--export id=e")
    r, w = os.pipe()
    with pytest.raises(ConfigError, match="not an open socket"):
        adopt(r, "--qmp fd:5")
    for fd in (r, w):
        os.close(fd)
    listening.close()
    idle.close()


def test_socket_activation_is_for_this_process_only() -> None:
    env = {"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": "2", "LISTEN_FDNAMES": "qmp:vol0"}
    assert systemd_fds(env) == {"qmp": 3, "vol0": 4}
    assert env == {}  # consumed: children do not see them
    assert systemd_fds({"LISTEN_PID": "1", "LISTEN_FDS": "1"}) == {}
    assert systemd_fds({"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": "1"}) == {"fd3": 3}


def test_topology_and_write_cache_are_offered_as_qsd_does() -> None:
    geometry = BlkGeometry(capacity=2048)
    assert geometry.features() & (1 << F_TOPOLOGY | 1 << F_CONFIG_WCE)
    raw = geometry.config(CONFIG.size)
    assert raw[CONFIG_WCE_OFFSET] == 1
    assert BlkGeometry(capacity=2048, wce=False).config(CONFIG.size)[CONFIG_WCE_OFFSET] == 0
    # topology: physical_block_exp 0, alignment 0, min_io_size 1, opt_io_size 1 (blocks)
    assert raw[24:32] == bytes([0, 0, 1, 0, 1, 0, 0, 0])
