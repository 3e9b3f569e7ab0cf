"""``vudm``: the daemon (``vudm serve``) and dmsetup's verbs as a qemu.qmp client.

Every verb is one QMP command (or query) against the daemon picked by ``--qmp PATH`` or
``$VUDM_QMP``; ``table``, ``status``, ``info`` and ``ls`` print what dmsetup prints,
``--json`` prints the QMP return value instead. A refused command exits 1 with the
daemon's own message on stderr; a usage error exits 2.

Other packages add verbs (``vudm scenario ...``) as :class:`Subcommand` objects named
by entry points in the ``vudm.scenarios`` group: the CLI finds them there and never
names those packages (they sit above it: they drive the daemon through this CLI).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import json
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import eventloop
from ..errors import ClientError, ControlError
from . import dmsetup_format as fmt
from .client import execute, qmp_session, socket_path
from .version import VERSION

if TYPE_CHECKING:
    from qemu.qmp import QMPClient

    from .qsd_args import QsdSetup
    from .serve import Listeners

PLUGIN_GROUP = "vudm.scenarios"
"""The entry point group of other packages' verbs: ``NAME = "module:SUBCOMMAND"``."""

Setup = Callable[[argparse.ArgumentParser], None]
Run = Callable[[argparse.Namespace], int]
Output = tuple[object, list[str]]
"""(the JSON shown with --json, the text lines shown otherwise)."""
Verb = Callable[["QMPClient", argparse.Namespace], Awaitable[Output]]


@dataclass(frozen=True)
class Subcommand:
    """A top-level verb: ``setup`` adds its arguments, ``run`` does it (exit status)."""

    name: str
    help: str
    setup: Setup
    run: Run


def plugin_subcommands() -> list[Subcommand]:
    """The verbs installed packages declare under :data:`PLUGIN_GROUP` (loading one
    imports its module, so only the names' modules, not their libraries, should load)."""
    found = []
    for ep in importlib.metadata.entry_points(group=PLUGIN_GROUP):
        verb = ep.load()
        if not isinstance(verb, Subcommand) or verb.name != ep.name:
            raise TypeError(f"entry point {PLUGIN_GROUP}: {ep.name} = {ep.value} is not "
                            f"a Subcommand named {ep.name!r}")
        found.append(verb)
    return found


# -- verbs ----------------------------------------------------------------------------


def _read_table(ns: argparse.Namespace) -> str:
    if ns.table is not None:
        return str(ns.table)
    if ns.table_file is not None:
        if ns.table_file == "-":
            return sys.stdin.read()
        try:
            return Path(ns.table_file).read_text()
        except OSError as e:
            raise ClientError(f"cannot read table file {ns.table_file}: {e.strerror}") from e
    if sys.stdin.isatty():
        raise ClientError("no table: give --table TEXT, a table file, or the table on stdin")
    return sys.stdin.read()


async def _query_dm(client: QMPClient, name: str | None) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = await execute(
        client, "query-dm", {"name": name} if name else None)
    return result


async def _create(client: QMPClient, ns: argparse.Namespace) -> Output:
    args: dict[str, object] = {"name": ns.name, "table": _read_table(ns)}
    if ns.uuid:
        args["uuid"] = ns.uuid
    if ns.suspended:
        args["suspended"] = True
    return await execute(client, "dm-create", args), []


async def _load(client: QMPClient, ns: argparse.Namespace) -> Output:
    return await execute(client, "dm-load", {"name": ns.name, "table": _read_table(ns)}), []


async def _clear(client: QMPClient, ns: argparse.Namespace) -> Output:
    return await execute(client, "dm-clear", {"name": ns.name}), []


async def _suspend(client: QMPClient, ns: argparse.Namespace) -> Output:
    args: dict[str, object] = {"name": ns.name, "noflush": ns.noflush}
    if ns.timeout is not None:
        args["timeout"] = ns.timeout
    return await execute(client, "dm-suspend", args), []


async def _resume(client: QMPClient, ns: argparse.Namespace) -> Output:
    args: dict[str, object] = {"name": ns.name}
    if ns.noflush:
        args["noflush"] = True
    return await execute(client, "dm-resume", args), []


async def _message(client: QMPClient, ns: argparse.Namespace) -> Output:
    result = await execute(client, "dm-message", {"name": ns.name, "sector": ns.sector,
                                                  "message": " ".join(ns.message)})
    reply = result.get("reply", "")
    return result, [reply] if reply else []


async def _remove(client: QMPClient, ns: argparse.Namespace) -> Output:
    return await execute(client, "dm-remove", {"name": ns.name, "force": ns.force}), []


async def _wait(client: QMPClient, ns: argparse.Namespace) -> Output:
    args: dict[str, object] = {"name": ns.name, "event-nr": ns.event_nr}
    if ns.timeout is not None:
        args["timeout"] = ns.timeout
    return await execute(client, "dm-wait", args), []


def _dm_view(kind: str) -> Verb:
    async def view(client: QMPClient, ns: argparse.Namespace) -> Output:
        entries = await _query_dm(client, ns.name)
        shown: object = entries[0] if ns.name else entries
        all_devices = ns.name is None
        if kind == "info":
            return shown, fmt.info_lines(entries, all_devices=all_devices)
        key = "inactive" if getattr(ns, "inactive", False) else kind
        return shown, fmt.table_lines(entries, key, all_devices=all_devices)

    return view


async def _ls(client: QMPClient, ns: argparse.Namespace) -> Output:
    entries = await _query_dm(client, None)
    return entries, fmt.ls_lines(entries)


async def _dev_add(client: QMPClient, ns: argparse.Namespace) -> Output:
    return await execute(client, "dev-add", {"name": ns.name, "uri": ns.uri,
                                             "read-only": ns.read_only}), []


async def _dev_remove(client: QMPClient, ns: argparse.Namespace) -> Output:
    return await execute(client, "dev-remove", {"name": ns.name}), []


async def _dev_ls(client: QMPClient, ns: argparse.Namespace) -> Output:
    devs = await execute(client, "query-devs")
    rows = [(d["name"], d["size"], d["state"], ",".join(d.get("users", [])) or "-", d["uri"])
            for d in devs]
    return devs, fmt.columns(rows, ("NAME", "SIZE", "STATE", "USERS", "URI")) if devs else []


async def _export_add(client: QMPClient, ns: argparse.Namespace) -> Output:
    args: dict[str, object] = {"id": ns.id, "dm": ns.dm, "socket": ns.socket,
                               "num-queues": ns.num_queues, "writable": not ns.read_only}
    if ns.serial:
        args["serial"] = ns.serial
    return await execute(client, "export-add", args), []


async def _export_del(client: QMPClient, ns: argparse.Namespace) -> Output:
    return await execute(client, "export-del", {"id": ns.id, "force": ns.force}), []


async def _export_ls(client: QMPClient, ns: argparse.Namespace) -> Output:
    exports = await execute(client, "query-exports")
    rows = [(e["id"], e["dm"], "yes" if e["connected"] else "no", e["num-queues"],
             "rw" if e.get("writable", True) else "ro", e["socket"]) for e in exports]
    return exports, (fmt.columns(rows, ("ID", "DM", "CONNECTED", "QUEUES", "MODE", "SOCKET"))
                     if exports else [])


# -- the parser -----------------------------------------------------------------------


def _common() -> argparse.ArgumentParser:
    """--qmp and --json, accepted before or after the verb."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--qmp", metavar="PATH", default=argparse.SUPPRESS,
                   help="the daemon's QMP socket (default: $VUDM_QMP)")
    p.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                   help="print the QMP return value as JSON")
    return p


def _table_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("name")
    p.add_argument("table_file", nargs="?", metavar="TABLE_FILE",
                   help="file with the table ('-' or none: stdin)")
    p.add_argument("--table", help="the table itself (one line per target)")


def _verb(sub: Any, common: argparse.ArgumentParser, name: str, verb: Verb, help: str,
          ) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(name, help=help, parents=[common])
    p.set_defaults(verb=verb)
    return p


def build_parser(extra: Sequence[Subcommand] = ()) -> argparse.ArgumentParser:
    """The whole ``vudm`` parser, with the ``extra`` verbs (ValueError on a name twice)."""
    common = _common()
    parser = argparse.ArgumentParser(
        prog="vudm", parents=[common],
        description="vudm: a userspace device-mapper serving vhost-user-blk disks")
    parser.add_argument("--version", action="version", version=f"vudm {VERSION}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("serve", help="run the daemon")
    p.add_argument("--qmp", metavar="PATH", help="QMP socket to create, or fd:N / fd:NAME"
                   " for an inherited listening socket (socket activation names)"
                   " (default: the config's [qmp] socket, $VUDM_QMP)")
    p.add_argument("--config", metavar="FILE", help="TOML file of devices, dms, exports")
    p.add_argument("--state-dir", metavar="DIR", help="save the state in DIR before every"
                   " reply and restore it at start (it wins over --config)")
    p.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING (default INFO)")
    p.add_argument("--blockdev", action="append", default=[], metavar="OPTS",
                   help="qemu-storage-daemon's: driver=file|nbd|null-co,node-name=N,...")
    p.add_argument("--export", action="append", default=[], metavar="OPTS",
                   help="qemu-storage-daemon's: type=vhost-user-blk,id=E,node-name=N,"
                        "addr.type=unix|fd,addr.path=P|addr.str=FD,writable=on,"
                        "num-queues=Q (served through a linear mapped device named E)")
    p.add_argument("--checker-interval", type=float, default=1.0, metavar="S",
                   help="probe multipath paths every S seconds (0: no path checker)")
    p.add_argument("--loop", choices=eventloop.LOOPS,
                   help=f"event loop (default: ${eventloop.ENV}, else uvloop if installed)")
    p.set_defaults(run=_run_serve)

    p = _verb(sub, common, "create", _create, "create a mapped device from a table")
    _table_args(p)
    p.add_argument("-u", "--uuid")
    p.add_argument("--suspended", action="store_true", help="leave it suspended")
    _table_args(_verb(sub, common, "load", _load, "load a table into the inactive slot"))
    _verb(sub, common, "clear", _clear, "drop the inactive table").add_argument("name")
    p = _verb(sub, common, "suspend", _suspend, "suspend a mapped device")
    p.add_argument("name")
    p.add_argument("--noflush", action="store_true", help="push back in-flight I/O")
    p.add_argument("--timeout", type=float, metavar="S", help="give up after S seconds")
    p = _verb(sub, common, "resume", _resume, "resume (swapping in the inactive table)")
    p.add_argument("name")
    p.add_argument("--noflush", action="store_true",
                   help="if not suspended yet, suspend with noflush before the swap")
    p = _verb(sub, common, "message", _message, "send a message to a target")
    p.add_argument("name")
    p.add_argument("sector", type=int)
    p.add_argument("message", nargs="+")
    for kind, text in (("table", "print the table"), ("status", "print target status"),
                       ("info", "print device information")):
        p = _verb(sub, common, kind, _dm_view(kind), text)
        p.add_argument("name", nargs="?")
        if kind == "table":
            p.add_argument("--inactive", action="store_true", help="the inactive table")
    _verb(sub, common, "ls", _ls, "list mapped devices")
    p = _verb(sub, common, "wait", _wait, "wait for an event number above EVENT_NR")
    p.add_argument("name")
    p.add_argument("event_nr", type=int, nargs="?", default=0)
    p.add_argument("--timeout", type=float, metavar="S")
    p = _verb(sub, common, "remove", _remove, "remove a mapped device")
    p.add_argument("name")
    p.add_argument("-f", "--force", action="store_true")

    dev = sub.add_parser("dev", help="registered devices").add_subparsers(
        dest="dev_command", metavar="COMMAND", required=True)
    p = _verb(dev, common, "add", _dev_add, "register a device URI under a name")
    p.add_argument("name")
    p.add_argument("uri")
    p.add_argument("--read-only", action="store_true")
    _verb(dev, common, "remove", _dev_remove, "close a device").add_argument("name")
    _verb(dev, common, "ls", _dev_ls, "list devices")

    exp = sub.add_parser("export", help="vhost-user-blk exports").add_subparsers(
        dest="export_command", metavar="COMMAND", required=True)
    p = _verb(exp, common, "add", _export_add, "serve a mapped device on a socket")
    p.add_argument("id")
    p.add_argument("dm")
    p.add_argument("socket")
    p.add_argument("--num-queues", type=int, default=1)
    p.add_argument("--read-only", action="store_true")
    p.add_argument("--serial")
    p = _verb(exp, common, "del", _export_del, "stop an export")
    p.add_argument("id")
    p.add_argument("-f", "--force", action="store_true", help="even with a guest attached")
    _verb(exp, common, "ls", _export_ls, "list exports")

    for verb in extra:
        if verb.name in sub.choices:
            raise ValueError(f"vudm subcommand {verb.name!r} registered twice")
        p = sub.add_parser(verb.name, help=verb.help)
        verb.setup(p)
        p.set_defaults(run=verb.run)
    return parser


# -- running --------------------------------------------------------------------------


def _run_serve(ns: argparse.Namespace) -> int:
    from backend.errors import ConfigError

    from .config import load_config
    from .logfmt import setup as setup_logging
    from .serve import run

    setup_logging(ns.log_level)
    try:
        config = load_config(ns.config) if ns.config else None
        qsd, listeners, qmp = _qsd_mode(ns)
    except ConfigError as e:
        print(f"vudm serve: {e}", file=sys.stderr)
        return 1
    path: str | None = qmp or (config.qmp_socket if config else None)
    if path is None and qsd is None:
        path = str(socket_path())
    try:
        run(Path(path) if path else None, config, loop=ns.loop,
            checker_interval=ns.checker_interval, state_dir=ns.state_dir,
            qsd=qsd, listeners=listeners)
    except (ControlError, OSError) as e:
        print(f"vudm serve: {e}", file=sys.stderr)
        return 1
    return 0


def _qsd_mode(ns: argparse.Namespace) -> tuple[QsdSetup | None, Listeners, str | None]:
    """qemu-storage-daemon's --blockdev/--export, inherited fds and socket activation:
    (the QsdSetup or None, the Listeners, the QMP path to show)."""
    from backend.errors import ConfigError

    from .listeners import adopt, systemd_fds
    from .qsd_args import QsdSetup, parse_blockdev, parse_export
    from .serve import Listeners

    named = systemd_fds()
    listeners = Listeners()
    qmp: str | None = ns.qmp
    if qmp is not None and qmp.startswith("fd:"):
        ref = qmp[3:]
        fd = int(ref) if ref.isdigit() else named.get(ref, -1)
        if fd < 0:
            raise ConfigError(f"--qmp {qmp}: not an fd number nor a socket name passed "
                              "by systemd (LISTEN_FDNAMES)")
        listeners.qmp = adopt(fd, f"--qmp {qmp}")
    if not ns.blockdev and not ns.export:
        return None, listeners, qmp
    setup = QsdSetup([parse_blockdev(b) for b in ns.blockdev],
                     [parse_export(e, named) for e in ns.export])
    for ex in setup.exports:
        if ex.socket.startswith("fd:"):
            fd = int(ex.socket[3:])
            listeners.exports[fd] = adopt(fd, f"--export id={ex.id}")
    return setup, listeners, qmp


async def _run_verb(ns: argparse.Namespace) -> Output:
    async with qmp_session(socket_path(getattr(ns, "qmp", None))) as client:
        output: Output = await ns.verb(client, ns)
        return output


def main(argv: Sequence[str] | None = None) -> int:
    """The console script: parse, run one verb, print, return the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    # The daemon needs no plugin verb, and loading them costs start-up time: what a
    # restarted daemon's guests wait through.
    serving = next((a for a in args if not a.startswith("-")), None) == "serve"
    ns = build_parser(() if serving else plugin_subcommands()).parse_args(args)
    if hasattr(ns, "run"):
        status: int = ns.run(ns)
        return status
    try:
        result, lines = asyncio.run(_run_verb(ns))
    except ClientError as e:
        print(f"vudm {ns.command}: {e}", file=sys.stderr)
        return 1
    if getattr(ns, "json", False):
        print(json.dumps(result, indent=2))
    elif lines:
        print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
