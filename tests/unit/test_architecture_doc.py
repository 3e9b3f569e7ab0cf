"""docs/architecture.md stays true to the code it describes.

The document names files and code (`backend/dm/iopath.py`, `IoPath.clone_endio`,
`require()`), and a refactor that renames one would otherwise leave a newcomer a map of
a house that is gone. Every inline-code span of the document is checked, by what it
looks like:

- a path (``backend/...``, ``tests/...``, ...; a ``*`` is a glob) must exist, and a bare
  file name (``dev.py``) must exist somewhere in the repository;
- ``Class.member`` (a capitalised first part) must be a class defined in our code with
  that member: a method, a class attribute, an enum member, or a ``self.member``
  assignment in one of its methods, its own or a base class's of ours;
- any other identifier that says it is code (CamelCase, an underscore, a call's
  parentheses, or the last part of a dotted name) must appear in our code as a name or a
  string literal (``DM_EVENT`` is only ever a string).

Plain words in backticks (``noflush``, ``ACTIVE``, ``vol0``) and command lines are not
checked: they name no code.
"""

from __future__ import annotations

import ast
import functools
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "architecture.md"
CODE = ("backend", "guests", "qmp_scenarios", "vudm_testing", "tests")
PATH_ROOTS = (*CODE, "docs", "images", "examples", "scripts", "distro")

_SPAN = re.compile(r"`([^`]+)`")
_CALL = re.compile(r"^@?([A-Za-z_][\w.]*)\(.*\)$", re.S)
_DOTTED = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
_FILE = re.compile(r"^[\w-]+\.(py|md|toml|sh)$")


def spans() -> list[str]:
    return [" ".join(s.split()) for s in _SPAN.findall(DOC.read_text())]


@functools.cache
def trees() -> list[ast.Module]:
    return [ast.parse(p.read_text(), str(p))
            for package in CODE for p in sorted((ROOT / package).rglob("*.py"))]


@functools.cache
def known_names() -> frozenset[str]:
    """Every identifier our code defines or uses, and every string literal in it."""
    names: set[str] = set()
    for tree in trees():
        for node in ast.walk(tree):
            if isinstance(node, ast.Name):
                names.add(node.id)
            elif isinstance(node, ast.Attribute):
                names.add(node.attr)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.arg):
                names.add(node.arg)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                names.add(node.value)
    return frozenset(names)


@functools.cache
def classes() -> dict[str, list[ast.ClassDef]]:
    found: dict[str, list[ast.ClassDef]] = {}
    for tree in trees():
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                found.setdefault(node.name, []).append(node)
    return found


def _members(cls: ast.ClassDef) -> set[str]:
    members: set[str] = set()
    for node in cls.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            members.add(node.name)
        elif isinstance(node, ast.Assign):
            members.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            members.add(node.target.id)
    for node in ast.walk(cls):  # self.x = ... in its methods
        targets = (node.targets if isinstance(node, ast.Assign)
                   else [node.target] if isinstance(node, ast.AnnAssign) else [])
        for t in targets:
            if (isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name)
                    and t.value.id == "self"):
                members.add(t.attr)
    return members


def has_member(class_name: str, member: str, seen: frozenset[str] = frozenset()) -> bool:
    for cls in classes().get(class_name, []):
        if member in _members(cls):
            return True
        for base in cls.bases:
            name = base.id if isinstance(base, ast.Name) else getattr(base, "attr", "")
            if name and name not in seen and has_member(name, member, seen | {class_name}):
                return True
    return False


def problems() -> list[str]:
    wrong: list[str] = []
    for span in spans():
        if span.startswith(PATH_ROOTS) and "/" in span and " " not in span:
            if not (any(ROOT.glob(span)) if "*" in span else (ROOT / span).exists()):
                wrong.append(f"no such path: {span}")
            continue
        if _FILE.match(span):
            if not any(ROOT.rglob(span)):
                wrong.append(f"no such file anywhere: {span}")
            continue
        call = _CALL.match(span)
        name = call.group(1) if call else span
        if not _DOTTED.match(name):
            continue  # a command line, an argument list, a table line: not a name
        parts = name.split(".")
        if len(parts) > 1 and parts[0][:1].isupper():
            if parts[0] not in classes():
                wrong.append(f"no class {parts[0]} (cited as {span})")
            elif not has_member(parts[0], parts[1]):
                wrong.append(f"class {parts[0]} has no {parts[1]} (cited as {span})")
            continue
        last = parts[-1]
        says_code = (call is not None or len(parts) > 1 or "_" in last
                     or (last[:1].isupper() and not last.isupper()))
        if says_code and last not in known_names():
            wrong.append(f"{last} appears nowhere in the code (cited as {span})")
    return wrong


def test_every_path_and_name_the_architecture_doc_cites_exists() -> None:
    wrong = problems()
    assert not wrong, "docs/architecture.md is out of date:\n  " + "\n  ".join(wrong)


def test_the_checker_sees_what_it_claims() -> None:
    """Without this a parser that found nothing would pass the test above vacuously."""
    cited = spans()
    assert "backend/dm/mapped_device.py" in cited and "IoPath.clone_endio" in cited
    assert has_member("MappedDevice", "submit_bio")  # a self.x assignment
    assert has_member("LinearTarget", "get_device")  # from its base class
    assert not has_member("MappedDevice", "no_such_member")
    unknown = "nothing_is_" + "called_this"  # not one literal: this file is code too
    assert "DM_EVENT" in known_names() and unknown not in known_names()
