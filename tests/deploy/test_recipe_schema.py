"""Our recipe JSON Schema, the 16 KB limit and ``ggvision recipe validate``."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from ggvision.cli import main
from ggvision.deploy.components import project_components
from ggvision.deploy.recipes import MAX_RECIPE_BYTES, schema_errors, validate_recipe_file

REPO = Path(__file__).resolve().parents[2]
RECIPES = [c.recipe_path for c in project_components(REPO)]

MINIMAL: dict[str, Any] = {
    "RecipeFormatVersion": "2020-01-25",
    "ComponentName": "com.example.Hello",
    "ComponentVersion": "1.0.0",
    "Manifests": [
        {
            "Platform": {"os": "linux"},
            "Lifecycle": {"Run": "echo hi"},
            "Artifacts": [{"URI": "s3://bucket/hello.zip", "Unarchive": "ZIP"}],
        }
    ],
}


@pytest.mark.parametrize("path", RECIPES, ids=[p.parent.name for p in RECIPES])
def test_every_recipe_is_valid(path: Path) -> None:
    assert validate_recipe_file(path) == []


def test_minimal_recipe_is_valid() -> None:
    assert schema_errors(MINIMAL) == []


def test_keys_are_case_insensitive() -> None:
    doc = json.loads(json.dumps(MINIMAL).replace('"Manifests"', '"manifests"'))
    doc["componentNAME"] = doc.pop("ComponentName")
    assert schema_errors(doc) == []


def _broken(mutate: Any) -> dict[str, Any]:
    doc = copy.deepcopy(MINIMAL)
    mutate(doc)
    return doc


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        (lambda d: d.pop("Manifests"), "manifests"),
        (lambda d: d.update(RecipeFormatVersion="2021-01-01"), "2020-01-25"),
        (lambda d: d.update(ComponentName="bad name!"), "does not match"),
        (lambda d: d.update(Scirpt="typo"), "scirpt"),
        (lambda d: d["Manifests"][0]["Artifacts"][0].update(Unarchive="TAR"), "TAR"),
        (lambda d: d["Manifests"][0]["Artifacts"][0].pop("URI"), "uri"),
        (lambda d: d["Manifests"][0]["Artifacts"][0].update(URI="ftp://x/y"), "ftp"),
        (lambda d: d["Manifests"][0]["Lifecycle"].update(Run={"Timeout": 5}), "lifecycle/run"),
        (
            lambda d: d.update(
                ComponentDependencies={"x.Y": {"DependencyType": "MAYBE"}},
            ),
            "MAYBE",
        ),
        (lambda d: d["Manifests"][0]["Artifacts"][0].update(Permission={"Read": "x"}), "'x'"),
    ],
)
def test_schema_rejects(mutate: Any, fragment: str) -> None:
    errors = schema_errors(_broken(mutate))
    assert errors, "expected a schema error"
    assert any(fragment.lower() in e.lower() for e in errors), errors


def test_size_limit_and_plain_version(tmp_path: Path) -> None:
    doc = copy.deepcopy(MINIMAL)
    doc["ComponentDescription"] = "x" * MAX_RECIPE_BYTES
    doc["ComponentVersion"] = "1.0.0-rc1"
    path = tmp_path / "big.yaml"
    path.write_text(yaml.safe_dump(doc))
    problems = validate_recipe_file(path)
    assert any("16000-byte" in p for p in problems), problems
    assert any("MAJOR.MINOR.PATCH" in p for p in problems), problems


def test_cli_validate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.json"
    good.write_text(json.dumps(MINIMAL))
    assert main(["recipe", "validate", str(good), *map(str, RECIPES)]) == 0
    assert f"{good}: ok" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(_broken(lambda d: d.pop("ComponentVersion"))))
    assert main(["recipe", "validate", str(good), str(bad)]) == 2
    out = capsys.readouterr().out
    assert f"{bad}: " in out and "componentversion" in out
    assert main(["recipe", "validate", str(tmp_path / "missing.yaml")]) == 2
