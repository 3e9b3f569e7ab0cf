"""qemu-storage-daemon's command line, as ``vudm serve`` takes it (a drop-in where QSD is
launched, e.g. by QEMU's own vhost-user-blk qtest).

``--blockdev driver=file|nbd|null-co,node-name=N,...`` becomes device N (dev-add);
``--export type=vhost-user-blk,id=E,node-name=N,addr.type=unix|fd,...`` becomes a linear
mapped device E over all of N (so dm commands work on it: suspend, load, resume) served
on the export's socket (export-add). Options are QEMU's keyval syntax (``a=b,c.d=e``,
``,,`` for a comma in a value). An option vudm does not implement is refused with its
name, never silently ignored, except for the few that only tune QEMU's own I/O path
(``aio``, ``cache.*``, ``locking``, ``discard``, ``detect-zeroes``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from backend.errors import CommandError, ConfigError

if TYPE_CHECKING:
    from .qmp import Dispatcher

IGNORED = {"aio", "cache.direct", "cache.no-flush", "locking", "discard", "detect-zeroes",
           "auto-read-only", "force-share"}
"""QEMU I/O tuning with no vudm counterpart: accepted (vudm picks its own engine)."""

_ON = {"on": True, "yes": True, "true": True, "off": False, "no": False, "false": False}


def parse_keyval(text: str, option: str) -> dict[str, str]:
    """``a=b,c.d=e`` -> {"a": "b", "c.d": "e"}; ``,,`` is a literal comma."""
    items: list[str] = []
    cur: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == ",":
            if text[i + 1:i + 2] == ",":
                cur.append(",")
                i += 2
                continue
            items.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    items.append("".join(cur))
    opts: dict[str, str] = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise ConfigError(f"{option} {text!r}: {item!r} is not KEY=VALUE")
        if key in opts:
            raise ConfigError(f"{option} {text!r}: {key!r} given twice")
        opts[key] = value
    return opts


def _take(opts: dict[str, str], key: str, option: str) -> str:
    try:
        return opts.pop(key)
    except KeyError:
        raise ConfigError(f"{option}: missing {key}=") from None


def _flag(opts: dict[str, str], key: str, option: str, default: bool) -> bool:
    if key not in opts:
        return default
    value = opts.pop(key)
    if value not in _ON:
        raise ConfigError(f"{option}: {key}={value!r}: expected on or off")
    return _ON[value]


def _no_more(opts: dict[str, str], option: str, what: str) -> None:
    unknown = sorted(k for k in opts if k not in IGNORED)
    if unknown:
        raise ConfigError(f"{option}: {what} does not take {unknown[0]!r}")


@dataclass(frozen=True)
class Blockdev:
    node_name: str
    uri: str
    read_only: bool = False


@dataclass(frozen=True)
class Export:
    id: str
    node_name: str
    socket: str
    """A path, or ``fd:N`` for an inherited listening socket."""
    writable: bool = False
    num_queues: int = 1
    serial: str = ""


def parse_blockdev(text: str) -> Blockdev:
    option = "--blockdev"
    opts = parse_keyval(text, option)
    driver = _take(opts, "driver", option)
    node = _take(opts, "node-name", option)
    read_only = _flag(opts, "read-only", option, False)
    where = f"{option} node-name={node}: driver={driver}"
    if driver == "file":
        filename = _take(opts, "filename", where)
        if "?" in filename or "#" in filename:
            raise ConfigError(f"{where}: filename {filename!r}: '?' and '#' are not supported")
        uri = f"file:{filename}"
    elif driver == "nbd":
        kind = _take(opts, "server.type", where)
        export = opts.pop("export", "")
        if kind == "unix":
            uri = f"nbd+unix:///{export}?socket={_take(opts, 'server.path', where)}"
        elif kind == "inet":
            host = _take(opts, "server.host", where)
            uri = f"nbd://{host}:{_take(opts, 'server.port', where)}/{export}"
        else:
            raise ConfigError(f"{where}: server.type={kind!r}: expected unix or inet")
    elif driver == "null-co":
        size = opts.pop("size", str(1 << 30))  # QEMU's default: 1 GiB
        if not size.isdigit():
            raise ConfigError(f"{where}: size={size!r}: expected bytes")
        opts.pop("read-zeroes", None)  # vudm's null device always reads zeroes
        uri = f"null:{size}"
    else:
        raise ConfigError(f"{where}: unsupported driver (vudm takes file, nbd, null-co)")
    _no_more(opts, where, f"driver={driver}")
    return Blockdev(node, uri, read_only)


def parse_export(text: str, listen_fds: dict[str, int] | None = None) -> Export:
    """``listen_fds`` maps systemd socket names (LISTEN_FDNAMES) to their fds, for
    ``addr.type=fd,addr.str=NAME``."""
    option = "--export"
    opts = parse_keyval(text, option)
    kind = _take(opts, "type", option)
    if kind != "vhost-user-blk":
        raise ConfigError(f"{option} type={kind}: vudm serves only vhost-user-blk exports")
    export_id = _take(opts, "id", option)
    where = f"{option} id={export_id}"
    node = _take(opts, "node-name", where)
    addr = _take(opts, "addr.type", where)
    if addr == "unix":
        socket = _take(opts, "addr.path", where)
    elif addr == "fd":
        ref = _take(opts, "addr.str", where)
        if ref.isdigit():
            socket = f"fd:{int(ref)}"
        elif listen_fds is not None and ref in listen_fds:
            socket = f"fd:{listen_fds[ref]}"
        else:
            raise ConfigError(f"{where}: addr.str={ref!r}: not an fd number nor a socket"
                              " name passed by systemd (LISTEN_FDNAMES)")
    else:
        raise ConfigError(f"{where}: addr.type={addr!r}: expected unix or fd")
    writable = _flag(opts, "writable", where, False)
    queues = opts.pop("num-queues", "1")
    if not queues.isdigit() or int(queues) < 1:
        raise ConfigError(f"{where}: num-queues={queues!r}: expected a number >= 1")
    serial = opts.pop("serial", "")
    if opts.get("logical-block-size", "512") != "512":
        raise ConfigError(f"{where}: logical-block-size: vudm exports 512-byte blocks")
    opts.pop("logical-block-size", None)
    _no_more(opts, where, "type=vhost-user-blk")
    return Export(export_id, node, socket, writable, int(queues), serial)


@dataclass
class QsdSetup:
    """What a QSD-style command line asks for, applied after the config at start."""

    blockdevs: list[Blockdev]
    exports: list[Export]


async def apply_qsd(setup: QsdSetup, dispatcher: Dispatcher) -> None:
    """dev-add each blockdev; for each export a linear mapped device over its whole
    node (named like the export) and export-add. The first refusal stops the start."""
    for bd in setup.blockdevs:
        await _run(dispatcher, f"--blockdev node-name={bd.node_name}", "dev-add",
                   {"name": bd.node_name, "uri": bd.uri, "read-only": bd.read_only})
    devs = await dispatcher.execute("query-devs", {})
    assert isinstance(devs, list)
    sizes = {d["name"]: int(d["size"]) for d in devs}
    for ex in setup.exports:
        where = f"--export id={ex.id}"
        if ex.node_name not in sizes:
            raise ConfigError(f"{where}: node-name={ex.node_name}: no such --blockdev")
        sectors = sizes[ex.node_name] >> 9
        await _run(dispatcher, where, "dm-create",
                   {"name": ex.id, "table": f"0 {sectors} linear {ex.node_name} 0"})
        args: dict[str, object] = {"id": ex.id, "dm": ex.id, "socket": ex.socket,
                                   "num-queues": ex.num_queues, "writable": ex.writable}
        if ex.serial:
            args["serial"] = ex.serial
        await _run(dispatcher, where, "export-add", args)


async def _run(dispatcher: Dispatcher, where: str, cmd: str,
               arguments: dict[str, object]) -> None:
    try:
        await dispatcher.execute(cmd, arguments)
    except CommandError as e:
        raise ConfigError(f"{where}: {e.desc}") from e
