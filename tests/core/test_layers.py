"""The core's import graph: no circle among its modules, no arrow up out of it.

Read from the source with ``ast`` (every ``import``, those under ``if TYPE_CHECKING:`` and inside
functions included), so a type-only import counts as much as a runtime one: lower modules never
name higher ones, not even for an annotation.
"""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
CORE = "ggvision.core"
# What the core must never import: the layers above it, test support, the components.
FORBIDDEN = (
    "ggvision.runner",
    "ggvision.testing",
    "ggvision.cli",
    "ggvision.deploy",
    "ggvision_camera",
    "ggvision_classifier",
    "ggvision_requester",
    "bench",
    "tests",
    "tools",
)


def _module_name(src: Path, path: Path) -> str:
    parts = list(path.relative_to(src).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(module: str, path: Path, known: set[str]) -> set[str]:
    """Every module ``module`` imports (absolute names), at any depth of its syntax tree."""
    is_package = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                if not is_package:
                    base.pop()
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            out.add(target)
            # ``from pkg import sub`` imports the submodule too.
            out.update(f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in known)
    out.discard(module)
    return out


def import_graph(src: Path, package: str = CORE) -> dict[str, set[str]]:
    """``module -> modules it imports`` for every module of ``package`` under ``src``."""
    root = src.joinpath(*package.split("."))
    paths = {_module_name(src, p): p for p in sorted(root.rglob("*.py"))}
    known = set(paths)
    return {name: _imports(name, path, known) for name, path in paths.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle among the graph's own modules (``[a, b, ..., a]``), or None."""
    done: set[str] = set()
    path: list[str] = []
    on_path: set[str] = set()

    def visit(node: str) -> list[str] | None:
        path.append(node)
        on_path.add(node)
        for dep in sorted(graph[node] & graph.keys()):
            if dep in on_path:
                return [*path[path.index(dep) :], dep]
            if dep not in done and (cycle := visit(dep)) is not None:
                return cycle
        path.pop()
        on_path.discard(node)
        done.add(node)
        return None

    for start in sorted(graph):
        if start not in done and (cycle := visit(start)) is not None:
            return cycle
    return None


def upward_imports(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    return sorted(
        (module, dep)
        for module, deps in graph.items()
        for dep in deps
        if any(dep == f or dep.startswith(f + ".") for f in FORBIDDEN)
    )


def test_no_import_cycle_among_core_modules() -> None:
    graph = import_graph(SRC)
    assert "ggvision.core.rpc" in graph and "ggvision.core.services.pubsub" in graph
    cycle = find_cycle(graph)
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])


def test_the_core_imports_nothing_above_it() -> None:
    assert upward_imports(import_graph(SRC)) == []


def _write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        pytest.param(
            {
                "ggvision/core/a.py": """
                    from typing import TYPE_CHECKING
                    if TYPE_CHECKING:
                        from ggvision.core.b import B
                """,
                "ggvision/core/b.py": "from ggvision.core import a\n",
            },
            ["ggvision.core.a", "ggvision.core.b", "ggvision.core.a"],
            id="type-only",
        ),
        pytest.param(
            {
                "ggvision/core/svc/__init__.py": "from . import x\n",
                "ggvision/core/svc/x.py": "def f():\n    from .. import svc\n",
            },
            ["ggvision.core.svc", "ggvision.core.svc.x", "ggvision.core.svc"],
            id="relative-in-a-function",
        ),
    ],
)
def test_the_check_sees_type_only_and_relative_cycles(
    tmp_path: Path, files: dict[str, str], expected: list[str]
) -> None:
    assert find_cycle(import_graph(_write(tmp_path, files))) == expected


def test_the_check_sees_an_arrow_up(tmp_path: Path) -> None:
    src = _write(
        tmp_path,
        {"ggvision/core/h.py": "from ggvision.runner.environment import nucleus_env\n"},
    )
    assert upward_imports(import_graph(src)) == [("ggvision.core.h", "ggvision.runner.environment")]
