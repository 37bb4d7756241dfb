from __future__ import annotations

from typing import Any

import pytest

from ggvision.errors import RecipeError
from ggvision.runner.recipe import Recipe, parse_recipe
from ggvision.runner.resolve import resolve

from .conftest import simple_recipe


def r(name: str, version: str = "1.0.0", **deps: Any) -> Recipe:
    return parse_recipe(
        simple_recipe(
            name,
            {"Run": "true"},
            version=version,
            deps={
                d.replace("_", "."): ({"VersionRequirement": v} if isinstance(v, str) else v)
                for d, v in deps.items()
            },
        ),
        f"{name}-{version}.yaml",
    )


def names(plan: list[Recipe]) -> list[str]:
    return [p.ident for p in plan]


def test_dependencies_come_first() -> None:
    recipes = [
        r("requester", classifier="*"),
        r("classifier", store=">=2.1.0 <2.2.0", camera={"DependencyType": "SOFT"}),
        r("store", "2.1.4"),
        r("camera"),
    ]
    assert names(resolve(recipes)) == [
        "camera@1.0.0",
        "store@2.1.4",
        "classifier@1.0.0",
        "requester@1.0.0",
    ]


def test_closure_of_requested_components_only() -> None:
    recipes = [r("a", b="*"), r("b"), r("unrelated")]
    assert names(resolve(recipes, ["a"])) == ["b@1.0.0", "a@1.0.0"]


def test_highest_fitting_version_is_chosen_and_pins_work() -> None:
    recipes = [r("app", lib="^1.0.0"), r("lib", "1.0.0"), r("lib", "1.4.0"), r("lib", "2.0.0")]
    assert names(resolve(recipes, ["app"])) == ["lib@1.4.0", "app@1.0.0"]
    assert names(resolve(recipes, ["lib=1.0.0"])) == ["lib@1.0.0"]


def test_missing_dependency_is_a_clear_error() -> None:
    with pytest.raises(RecipeError) as err:
        resolve([r("classifier", store=">=2.1.0 <2.2.0")])
    assert "classifier@1.0.0 depends on store (HARD, '>=2.1.0 <2.2.0')" in str(err.value)
    assert "no recipe for store" in str(err.value)


def test_no_fitting_version() -> None:
    with pytest.raises(RecipeError) as err:
        resolve([r("classifier", store=">=2.1.0 <2.2.0"), r("store", "2.2.0")])
    assert "no version of store meets" in str(err.value)
    assert "available: 2.2.0" in str(err.value)


def test_conflicting_requirements() -> None:
    recipes = [r("a", lib="1.0.0"), r("b", lib="2.0.0"), r("lib", "1.0.0"), r("lib", "2.0.0")]
    with pytest.raises(RecipeError) as err:
        resolve(recipes, ["a", "b"])
    assert "b@1.0.0 needs lib '2.0.0' but lib@1.0.0 was chosen" in str(err.value)


def test_cycles_are_errors() -> None:
    with pytest.raises(RecipeError) as err:
        resolve([r("a", b="*"), r("b", c="*"), r("c", a="*")])
    assert "dependency cycle: a -> b -> c -> a" in str(err.value)


def test_unknown_requested_component() -> None:
    with pytest.raises(RecipeError) as err:
        resolve([r("a")], ["nope"])
    assert "no recipe for component nope" in str(err.value)
