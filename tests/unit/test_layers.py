"""No module imports from a layer above it, and no import circle: checked on the source.

This is how we check DESIGN.md's rule ("no layer imports from a layer above it: targets
never import control; dm never imports vhost; qmp_scenarios use guests/ and the control
client, never backend internals"). Every module of the four shipped packages is parsed
with ``ast``, and every import counts, wherever it is written: at the top, inside a
function (a lazy import is still a dependency, only a later one), under
``TYPE_CHECKING`` (a type-only import still ties the two modules' designs together), and
``importlib.import_module("a.literal")``. ``from pkg import name`` is an import of
``pkg.name`` when that is a module, else of ``pkg``; the parent packages Python imports
on the way are not counted (a package's ``__init__`` re-exporting its modules would
otherwise make every module a circle with its own package).

The test fails on:

- a module that is in no layer of :data:`LAYERS` (a new module must be placed);
- an import of a module whose layer is neither the importer's own nor one its layer
  ``uses`` (the table lists each layer's direct uses, not a rank: vhost and dm are
  side by side and neither may use the other);
- an import circle: a strongly connected component of more than one module (Tarjan).
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("backend", "guests", "qmp_scenarios", "vudm_testing")


@dataclass(frozen=True)
class Layer:
    name: str
    modules: tuple[str, ...]
    """Module prefixes; a module belongs to the layer with the longest matching prefix."""
    uses: tuple[str, ...]
    """The layers this one may import from (besides itself)."""
    why: str


LAYERS = (
    Layer("base", ("backend.errors", "backend.limits", "backend.blockio", "backend.sockets",
                   "backend.images", "backend.memory", "backend.eventloop"),
          (), "what every backend layer shares: the one exception tree, the protocol "
          "limits, the block I/O vocabulary (Op, Status, BlockDevice, Bio), the unix "
          "socket path claimer, the raw image files benches and rigs make, raw memory "
          "by address, the choice of event loop"),
    Layer("devices", ("backend.devices",), ("base",),
          "what targets map onto (file, nbd, mem, null): below dm, they know no table"),
    Layer("vhost", ("backend.vhost",), ("base",),
          "the transport (libvhost-user, virtio-blk decoding): it serves any BlockDevice "
          "and knows neither dm nor targets nor the devices behind it"),
    Layer("dm", ("backend.dm",), ("base", "devices"),
          "the mapper core: table, mapped device, split, flush, suspend; never vhost"),
    Layer("targets", ("backend.targets",), ("base", "devices", "dm"),
          "one module per target, registered by name in dm; never the daemon or control"),
    Layer("daemon", ("backend",),
          ("base", "devices", "vhost", "dm", "targets"),
          "what assembles the layers below (every backend module not in a layer of its "
          "own): the device registry, exports, the path checker, the state journal"),
    Layer("client", ("backend.control.client",), ("base",),
          "a qemu.qmp session to a daemon: what every program driving vudm uses"),
    Layer("control", ("backend.control",), ("base", "devices", "vhost", "dm", "targets",
                                            "daemon", "client"),
          "the QMP monitor, its commands and the daemon's process (``vudm serve``)"),
    Layer("cli", ("backend.control.cli",), ("base", "control", "client"),
          "the ``vudm`` command: serve, dmsetup's verbs, and verbs other packages add "
          "through the ``vudm.scenarios`` entry points (it never names them)"),
    Layer("guests", ("guests",), (),
          "QEMU guests via qemu.qmp: knows nothing of the backend it is a guest of"),
    Layer("harness", ("vudm_testing.daemon",), ("base", "client", "guests"),
          "``vudm serve`` as a child process, for scenarios, suites and tests"),
    Layer("scenarios", ("qmp_scenarios",), ("base", "client", "cli", "guests", "harness"),
          "the QMP-driven rig and its named scenarios: they drive the daemon as a user "
          "does (QMP, the vudm command), never through backend internals"),
    Layer("adapters", ("vudm_testing",),
          ("base", "client", "guests", "harness", "scenarios"),
          "the pytest plugin and avocado base class over the scenarios"),
)


def modules() -> dict[str, tuple[Path, bool]]:
    """Every shipped module: name -> (file, is a package's __init__)."""
    found: dict[str, tuple[Path, bool]] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            if is_package:
                parts.pop()
            found[".".join(parts)] = (path, is_package)
    return found


def _imported_names(tree: ast.AST, module: str, is_package: bool,
                    known: Collection[str]) -> Iterator[str]:
    """The modules ``module``'s code imports (of the ``known`` ones, or any if absent)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            origin = node.module or ""
            if node.level:
                parts = module.split(".")
                keep = len(parts) - node.level + (1 if is_package else 0)
                origin = ".".join([*parts[:keep], *([origin] if origin else [])])
            for alias in node.names:
                full = f"{origin}.{alias.name}"
                yield full if full in known else origin
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr == "import_module" and node.args
              and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)):
            yield node.args[0].value


@functools.cache
def import_graph() -> dict[str, set[str]]:
    """module -> the shipped modules it imports."""
    mods = modules()
    graph: dict[str, set[str]] = {}
    for name, (path, is_package) in mods.items():
        tree = ast.parse(path.read_text(), str(path))
        imported = set(_imported_names(tree, name, is_package, mods))
        graph[name] = {m for m in imported if m in mods and m != name}
    return graph


def layer_of(module: str) -> Layer | None:
    best: tuple[int, Layer] | None = None
    for layer in LAYERS:
        for prefix in layer.modules:
            if (module == prefix or module.startswith(prefix + ".")) and (
                    best is None or len(prefix) > best[0]):
                best = (len(prefix), layer)
    return best[1] if best else None


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm (iterative): the components of more than one node."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def test_the_layer_table_is_itself_layered() -> None:
    """LAYERS runs bottom to top: a layer uses only layers listed before it."""
    names = [layer.name for layer in LAYERS]
    assert len(set(names)) == len(names)
    for i, layer in enumerate(LAYERS):
        for used in layer.uses:
            assert used in names[:i], f"{layer.name} uses {used}, not a layer below it"


def test_every_module_is_in_a_layer() -> None:
    unplaced = [m for m in modules() if layer_of(m) is None]
    assert not unplaced, f"modules in no layer (add them to LAYERS): {unplaced}"


def test_no_module_imports_from_a_layer_it_may_not_use() -> None:
    wrong = []
    for module, imported in sorted(import_graph().items()):
        mine = layer_of(module)
        assert mine is not None
        for target in sorted(imported):
            theirs = layer_of(target)
            assert theirs is not None
            if theirs is not mine and theirs.name not in mine.uses:
                wrong.append(f"{module} ({mine.name}) imports {target} ({theirs.name})")
    assert not wrong, "imports against the layering:\n  " + "\n  ".join(wrong)


def test_no_import_circle() -> None:
    circles = strongly_connected(import_graph())
    assert not circles, "import circles:\n  " + "\n  ".join(
        " <-> ".join(c) for c in circles)


def test_the_checker_sees_what_it_claims() -> None:
    """The parser finds lazy, type-only and importlib imports, and Tarjan finds a circle:
    without this a broken parser would pass the tests above vacuously."""
    tree = ast.parse(
        "from typing import TYPE_CHECKING\n"
        "import importlib\n"
        "if TYPE_CHECKING:\n    from .b import B\n"
        "def f():\n    from ..c import d\n    importlib.import_module('x.y')\n")
    found = set(_imported_names(tree, "pkg.a", False, {"pkg.b", "c"}))
    assert found == {"typing", "importlib", "pkg.b", "c", "x.y"}, found
    assert strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [
        ["a", "b", "c"]]
    graph = import_graph()
    assert "backend.dm.table" in graph["backend.dm.mapped_device"]
    assert layer_of("backend.targets.linear") is not None
    assert layer_of("backend.targets.linear").name == "targets"  # type: ignore[union-attr]
