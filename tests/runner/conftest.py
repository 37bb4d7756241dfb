"""Fixtures of the runner tests: short socket roots, recipe files, a real core on this loop."""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

RecipeWriter = Callable[..., Path]


@pytest.fixture
def short_root() -> Iterator[Path]:
    """A core root under /tmp: pytest's tmp_path is too deep for 107-byte socket paths."""
    root = Path(tempfile.mkdtemp(prefix="ggv", dir="/tmp"))
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def recipe_dir(tmp_path: Path) -> Path:
    d = tmp_path / "recipes"
    d.mkdir()
    return d


@pytest.fixture
def write_recipe(recipe_dir: Path) -> RecipeWriter:
    """Write a recipe document (YAML by default) into ``recipe_dir``; returns its path."""

    def write(doc: dict[str, Any], *, fmt: str = "yaml", name: str | None = None) -> Path:
        stem = name or f"{doc.get('ComponentName', 'x')}-{doc.get('ComponentVersion', '0')}"
        path = recipe_dir / f"{stem}.{fmt}"
        text = json.dumps(doc, indent=2) if fmt == "json" else yaml.safe_dump(doc, sort_keys=False)
        path.write_text(text)
        return path

    return write


@pytest.fixture
def python() -> str:
    """The interpreter that has awsiotsdk: component scripts run with it."""
    return sys.executable


def simple_recipe(
    name: str,
    lifecycle: dict[str, Any],
    *,
    version: str = "1.0.0",
    config: dict[str, Any] | None = None,
    deps: dict[str, Any] | None = None,
    artifacts: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "RecipeFormatVersion": "2020-01-25",
        "ComponentName": name,
        "ComponentVersion": version,
        "ComponentConfiguration": {"DefaultConfiguration": config or {}},
        "Manifests": [
            {
                "Platform": {"os": "linux"},
                "Lifecycle": lifecycle,
                **({"Artifacts": artifacts} if artifacts else {}),
            }
        ],
    }
    if deps:
        doc["ComponentDependencies"] = deps
    return doc
