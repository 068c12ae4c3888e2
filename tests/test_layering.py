"""Imports only go down the three floors of docs/layering.md, and no module takes another's private names.

Ground ``asqhw.core``; middle ``asqhw.golden``, ``asqhw.sim``, ``asqhw.hdl`` (and any other
subpackage of ``asqhw``, such as ``asqhw.host``), independent of each other; top ``asqhw.cli``.
The checker reads every module under ``asqhw/`` with :mod:`ast` (imports inside functions too)
and names each import that breaks a rule.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
GROUND, TOP = "core", "cli"
FLOORS = ("ground", "middle floor", "top floor")


def module_name(path: Path, root: Path) -> str:
    """``asqhw/hdl/engine/top.py`` -> ``asqhw.hdl.engine.top`` (a package is its ``__init__``)."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def floor_of(module: str) -> tuple[int, str]:
    """``(floor, package)``: 0 ground, 1 middle (package names which), 2 top; the root ``asqhw`` is 0."""
    parts = module.split(".")
    sub = parts[1] if len(parts) > 1 and not parts[1].startswith("__") else GROUND
    return (0 if sub == GROUND else 2 if sub == TOP else 1), sub


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def imports_of(path: Path, root: Path):
    """``(line, module, name or None, is_import)`` of every import of an ``asqhw`` module in
    ``path`` (``is_import``), and of every private attribute read through such an import."""
    me = module_name(path, root)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    tree = ast.parse(path.read_text(), str(path))
    bound: dict[str, str] = {}          # local name -> the asqhw module (or module.name) it stands for
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "asqhw":
                    out.append((node.lineno, a.name, None, True))
                    bound[a.asname or a.name.split(".")[0]] = a.asname and a.name or "asqhw"
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            if base.split(".")[0] != "asqhw":
                continue
            for a in node.names:
                out.append((node.lineno, base, a.name, True))
                bound[a.asname or a.name] = f"{base}.{a.name}"
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and _private(node.attr) and isinstance(node.value, ast.Name)
                and node.value.id in bound):
            out.append((node.lineno, bound[node.value.id], node.attr, False))
    return out


def violations(root: Path) -> list[str]:
    """Every import under ``root/asqhw`` that breaks a floor rule or takes a private name."""
    found = []
    for path in sorted((root / "asqhw").rglob("*.py")):
        me = module_name(path, root)
        my_floor, my_pkg = floor_of(me)
        where = path.relative_to(root)
        for line, target, name, is_import in imports_of(path, root):
            full = f"{target}.{name}" if name else target
            floor, pkg = floor_of(full if target == "asqhw" else target)
            if is_import and floor > my_floor:
                found.append(f"{where}:{line}: {me} ({FLOORS[my_floor]}) imports {full} from the {FLOORS[floor]} above it")
            elif is_import and floor == my_floor == 1 and pkg != my_pkg:
                found.append(f"{where}:{line}: {me} imports {full}: middle packages are independent")
            if name and _private(name) and target != me:
                found.append(f"{where}:{line}: {me} uses the private name {name} of {target}")
    return found


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the ``asqhw`` modules it imports (``from pkg import sub`` counts as ``pkg.sub``)."""
    paths = sorted((root / "asqhw").rglob("*.py"))
    modules = {module_name(p, root) for p in paths}
    graph = {}
    for path in paths:
        me = module_name(path, root)
        edges = set()
        for _, target, name, is_import in imports_of(path, root):
            if not is_import:
                continue
            sub = f"{target}.{name}" if name else target
            found = sub if sub in modules else target
            while found not in modules and "." in found:
                found = found.rpartition(".")[0]
            if found != me and found in modules and not me.startswith(found + "."):
                edges.add(found)
        graph[me] = edges
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import circles of ``graph``: each strongly connected set of two or more modules, sorted."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


def test_no_import_circles():
    assert circles(import_graph(ROOT)) == []


def test_no_import_breaks_a_floor_rule_or_takes_a_private_name():
    found = violations(ROOT)
    assert not found, "\n".join(found)


def test_the_floors_are_ground_middle_top():
    assert floor_of("asqhw.core.params") == (0, "core")
    assert floor_of("asqhw") == (0, "core")
    assert floor_of("asqhw.sim.network") == (1, "sim")
    assert floor_of("asqhw.host.driver") == (1, "host")
    assert floor_of("asqhw.cli.main") == (2, "cli")


# --- the checker catches what it should: a planted violation of each rule -------------------------
def _plant(tmp_path, files: dict[str, str]) -> list[str]:
    for rel, text in {"asqhw/__init__.py": "", "asqhw/core/__init__.py": "", "asqhw/cli/__init__.py": "",
                      "asqhw/sim/__init__.py": "", "asqhw/hdl/__init__.py": "", "asqhw/hdl/engine/__init__.py": "",
                      "asqhw/host/__init__.py": "", **files}.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    return violations(tmp_path)


def test_a_clean_tree_passes(tmp_path):
    assert _plant(tmp_path, {
        "asqhw/core/spec.py": "from asqhw import __version__\nV = 1\n",
        "asqhw/sim/run.py": "from asqhw.core import spec\nfrom ..core.spec import V\nfrom . import kern\n",
        "asqhw/sim/kern.py": "def _helper(): pass\ndef use(): return _helper()\n",
        "asqhw/cli/main.py": "import asqhw.sim.run\nfrom asqhw.hdl import engine\nfrom asqhw.host import x\n",
    }) == []


def test_the_circle_finder_catches_a_planted_circle(tmp_path):
    _plant(tmp_path, {"asqhw/sim/a.py": "from . import b\n", "asqhw/sim/b.py": "def f():\n    from .c import x\n",
                      "asqhw/sim/c.py": "from asqhw.sim.a import y\n", "asqhw/sim/d.py": "from . import a\n"})
    assert circles(import_graph(tmp_path)) == [["asqhw.sim.a", "asqhw.sim.b", "asqhw.sim.c"]]


@pytest.mark.parametrize("rel, text, fragment", [
    ("asqhw/core/params.py", "from asqhw.sim import run\n", "middle floor above it"),
    ("asqhw/core/params.py", "def f():\n    from ..cli import main\n", "top floor above it"),
    ("asqhw/core/params.py", "import asqhw.hdl.engine\n", "middle floor above it"),
    ("asqhw/sim/run.py", "from asqhw.cli.common import table\n", "top floor above it"),
    ("asqhw/hdl/engine/emit.py", "from ...cli import common\n", "top floor above it"),
    ("asqhw/sim/run.py", "from asqhw.hdl import dot\n", "middle packages are independent"),
    ("asqhw/hdl/engine/emit.py", "from ...sim import run\n", "middle packages are independent"),
    ("asqhw/host/driver.py", "import asqhw.golden.netref\n", "middle packages are independent"),
    ("asqhw/cli/main.py", "from asqhw.core.vectors import _check_index\n", "private name _check_index"),
    ("asqhw/hdl/engine/emit.py", "from ..verilog import _header\n", "private name _header"),
    ("asqhw/cli/main.py", "from asqhw.core import vectors\nvectors._check_index(1)\n", "private name _check_index"),
    ("asqhw/cli/main.py", "import asqhw.core.vectors as v\nv._read(1)\n", "private name _read"),
])
def test_the_checker_catches_a_planted_violation(tmp_path, rel, text, fragment):
    found = _plant(tmp_path, {rel: text})
    assert len(found) == 1 and fragment in found[0], found
