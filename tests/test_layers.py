"""The house's import rules, read from the source with ``ast`` (imports under ``if
TYPE_CHECKING:`` and inside functions count too: a lazy import is still an arrow):

- no import circle inside any package (``ggvision`` and each component's package);
- inside ``ggvision``, no arrow from a lower layer to a higher one (``LAYERS`` below), and none
  between rooms kept apart (``APART``: the serving library runs on devices, the local core is
  the laptop's stand-in for the Nucleus);
- between the top-level rooms: bench/cdk -> tools -> components -> ``ggvision``; the library
  imports no component, components never import each other, nothing shipped imports tests,
  tools or bench.

Each rule is checked on a deliberately broken graph too, so a checker that sees nothing fails.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
COMPONENTS = REPO / "components"

# ggvision's rooms, lowest first. A module may import its own layer's modules (without a
# circle) and any lower layer's, never a higher one's.
LAYERS: tuple[frozenset[str], ...] = (
    frozenset({"errors"}),
    frozenset(
        {"contract", "config", "logs", "signals", "stats", "frames", "correlate", "annotate"}
    ),
    frozenset({"bus", "telemetry", "uplink"}),
    frozenset({"core", "component"}),
    frozenset({"serving", "runner"}),
    frozenset({"deploy", "testing"}),
    frozenset({"cli"}),
)

# room -> rooms it never imports, whatever their layers.
APART: dict[str, frozenset[str]] = {"serving": frozenset({"core", "runner"})}


def _packages() -> dict[str, Path]:
    """Top-level package name -> its directory (the library and each component's package)."""
    found = {"ggvision": REPO / "src" / "ggvision"}
    for src in sorted(COMPONENTS.glob("*/src")):
        for pkg in sorted(p for p in src.iterdir() if (p / "__init__.py").is_file()):
            found[pkg.name] = pkg
    return found


def _modules(pkg_dir: Path) -> dict[str, Path]:
    mods: dict[str, Path] = {}
    for path in sorted(pkg_dir.rglob("*.py")):
        parts = list(path.relative_to(pkg_dir.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        mods[".".join(parts)] = path
    return mods


def imported_names(module: str, path: Path) -> set[str]:
    """Every dotted name ``module`` imports (``from a import b`` gives ``a`` and ``a.b``)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            names.add(target)
            names.update(f"{target}.{alias.name}" for alias in node.names)
    return names


def import_graph(mods: Mapping[str, Path]) -> dict[str, set[str]]:
    """Module -> the modules of ``mods`` it imports (a package import is an arrow to its
    ``__init__``)."""
    graph: dict[str, set[str]] = {}
    for mod, path in mods.items():
        graph[mod] = {n for n in imported_names(mod, path) if n in mods and n != mod}
    return graph


def cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def layer_of(module: str) -> int | None:
    parts = module.split(".")
    if parts[0] != "ggvision" or len(parts) < 2:
        return None  # the package's own __init__ sits below everything
    for rank, rooms in enumerate(LAYERS):
        if parts[1] in rooms:
            return rank
    raise AssertionError(f"{module}: its room {parts[1]!r} is in no layer of LAYERS")


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def upward_imports(graph: Mapping[str, Iterable[str]]) -> list[str]:
    """Arrows up the layers, and arrows between rooms kept ``APART``."""
    bad = []
    for mod, targets in graph.items():
        low = layer_of(mod)
        for target in targets:
            high = layer_of(target)
            if low is not None and high is not None and high > low:
                bad.append(f"{mod} (layer {low}) imports {target} (layer {high})")
            elif _room(target) in APART.get(_room(mod), ()):
                bad.append(f"{mod} imports {target} (kept apart)")
    return sorted(bad)


def _roots(names: Iterable[str]) -> set[str]:
    return {n.split(".")[0] for n in names}


# --- the rules on the real tree ----------------------------------------------------------------


@pytest.mark.parametrize("package", sorted(_packages()))
def test_no_import_circle(package: str) -> None:
    graph = import_graph(_modules(_packages()[package]))
    assert graph, f"{package}: no modules found"
    assert cycles(graph) == []


def test_library_layers_point_down() -> None:
    assert upward_imports(import_graph(_modules(_packages()["ggvision"]))) == []


def test_rooms_import_one_way() -> None:
    packages = _packages()
    components = set(packages) - {"ggvision"}
    shipped_forbidden = {"tests", "tools", "bench", "cdk", "modelbuild"}
    for name, pkg_dir in packages.items():
        for mod, path in _modules(pkg_dir).items():
            roots = _roots(imported_names(mod, path)) - {name}
            assert not roots & shipped_forbidden, f"{mod} imports {roots & shipped_forbidden}"
            if name == "ggvision":
                assert not roots & components, f"the library's {mod} imports a component"
            else:
                others = roots & (components - {name})
                assert not others, f"{mod} imports another component: {others}"
    for path in sorted((REPO / "tools").rglob("*.py")):
        roots = _roots(imported_names(f"tools.{path.stem}", path))
        assert not roots & {"bench", "tests", "cdk"}, f"{path} imports {roots}"


# --- the checkers see what they must -----------------------------------------------------------


def test_checkers_see_a_circle_and_an_upward_arrow(tmp_path: Path) -> None:
    pkg = tmp_path / "ggvision"
    (pkg / "core").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "core" / "__init__.py").write_text("")
    (pkg / "core" / "server.py").write_text("from ggvision.core import rpc\n")
    (pkg / "core" / "rpc.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .server import X\n"
    )
    (pkg / "core" / "harness.py").write_text(
        "def f():\n    from ggvision.runner.environment import nucleus_env\n"
    )
    (pkg / "runner").mkdir()
    (pkg / "runner" / "__init__.py").write_text("")
    (pkg / "runner" / "environment.py").write_text("")
    (pkg / "serving").mkdir()
    (pkg / "serving" / "__init__.py").write_text("import ggvision.core.server\n")
    graph = import_graph(_modules(pkg))
    assert cycles(graph) == [["ggvision.core.rpc", "ggvision.core.server"]]
    assert upward_imports(graph) == [
        "ggvision.core.harness (layer 3) imports ggvision.runner.environment (layer 4)",
        "ggvision.serving imports ggvision.core.server (kept apart)",
    ]
