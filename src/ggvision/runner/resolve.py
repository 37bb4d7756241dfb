"""Which components run, and in what order: the dependency closure of the requested components,
ordered so that every component comes after its ``ComponentDependencies`` (HARD and SOFT).

Versions: a requested ``name=1.2.3`` is pinned; otherwise the highest available version that
meets every requirement seen so far is chosen (no back-tracking: a later conflicting requirement
is an error naming both sides).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence

from ggvision.errors import RecipeError
from ggvision.runner.recipe import Recipe
from ggvision.runner.versions import parse_version, satisfies


def _split(spec: str) -> tuple[str, str | None]:
    name, _, version = spec.partition("=")
    name = name.strip()
    if not name:
        raise RecipeError(f"component {spec!r}: empty name")
    return name, version.strip() or None


def resolve(available: Sequence[Recipe], wanted: Sequence[str] = ()) -> list[Recipe]:
    """The components to run, dependencies first. ``wanted`` empty means every recipe."""
    by_name: dict[str, list[Recipe]] = {}
    for r in available:
        by_name.setdefault(r.name, []).append(r)
    for versions in by_name.values():
        versions.sort(key=lambda r: parse_version(r.version), reverse=True)

    chosen: dict[str, Recipe] = {}
    required: dict[str, list[tuple[str, str]]] = {}  # dep -> [(requirer, requirement)]
    queue: deque[Recipe] = deque()

    def add_root(name: str, version: str | None) -> None:
        candidates = by_name.get(name)
        if not candidates:
            raise RecipeError(f"no recipe for component {name} (known: {sorted(by_name) or '-'})")
        if version is not None:
            pinned = [r for r in candidates if r.version == version]
            if not pinned:
                raise RecipeError(
                    f"no recipe for {name}={version} (versions: "
                    f"{', '.join(r.version for r in candidates)})"
                )
            pick = pinned[0]
        else:
            pick = candidates[0]
        if name in chosen and chosen[name] is not pick:
            raise RecipeError(f"{name} requested twice with different versions")
        if name not in chosen:
            chosen[name] = pick
            queue.append(pick)

    def close() -> None:
        while queue:
            recipe = queue.popleft()
            for dep_name, dep in sorted(recipe.dependencies.items()):
                _require(recipe, dep_name, dep.version_requirement, dep.dependency_type)

    def _require(recipe: Recipe, dep_name: str, requirement: str, kind: str) -> None:
        reqs = required.setdefault(dep_name, [])
        reqs.append((recipe.ident, requirement))
        if dep_name in chosen:
            have = chosen[dep_name]
            if not satisfies(have.version, requirement):
                raise RecipeError(
                    f"{recipe.source}: {recipe.ident} needs {dep_name} {requirement!r} but "
                    f"{have.ident} was chosen (required by: {_describe(reqs)})"
                )
            return
        candidates = by_name.get(dep_name)
        if not candidates:
            raise RecipeError(
                f"{recipe.source}: {recipe.ident} depends on {dep_name} ({kind}, "
                f"{requirement!r}) but there is no recipe for {dep_name}"
            )
        fitting = [r for r in candidates if all(satisfies(r.version, q) for _, q in reqs)]
        if not fitting:
            raise RecipeError(
                f"{recipe.source}: no version of {dep_name} meets {_describe(reqs)} "
                f"(available: {', '.join(r.version for r in candidates)})"
            )
        chosen[dep_name] = fitting[0]
        queue.append(fitting[0])

    if wanted:
        for spec in wanted:
            add_root(*_split(spec))
        close()
    else:
        # Every recipe runs; versions of dependencies follow their dependents' requirements,
        # so start from the components nothing depends on.
        depended = {d for versions in by_name.values() for r in versions for d in r.dependencies}
        for name in sorted(set(by_name) - depended):
            add_root(name, None)
        close()
        for name in sorted(by_name):
            if name not in chosen:  # only reachable through a cycle
                add_root(name, None)
                close()

    return order(chosen)


def _describe(reqs: Sequence[tuple[str, str]]) -> str:
    return ", ".join(f"{who} wants {req!r}" for who, req in reqs)


def order(components: Mapping[str, Recipe]) -> list[Recipe]:
    """Topological order (dependencies first, ties by name); a cycle is a RecipeError."""
    done: set[str] = set()
    on_path: list[str] = []
    out: list[Recipe] = []

    def visit(name: str) -> None:
        if name in done:
            return
        if name in on_path:
            cycle = [*on_path[on_path.index(name) :], name]
            raise RecipeError(f"dependency cycle: {' -> '.join(cycle)}")
        on_path.append(name)
        for dep in sorted(components[name].dependencies):
            if dep in components:
                visit(dep)
        on_path.pop()
        done.add(name)
        out.append(components[name])

    for name in sorted(components):
        visit(name)
    return out
