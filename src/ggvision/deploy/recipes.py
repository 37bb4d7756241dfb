"""Recipe validation against our JSON Schema (``schemas/recipe.v2020-01-25.json``).

Greengrass reads recipe keys case-insensitively, so validation runs on a copy with lower-cased
keys (values keep their case), as the GDK CLI does. On top of the schema: the 16 KB size limit of
a recipe document, and this project's rule that component versions are plain MAJOR.MINOR.PATCH.
"""

from __future__ import annotations

import json
import re
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from ggvision.runner.recipe import parse_recipe, read_document

# Greengrass rejects recipes larger than this (the GDK CLI checks the same number).
MAX_RECIPE_BYTES = 16_000
PLAIN_VERSION = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$")


def lower_keys(value: Any) -> Any:
    """A copy of ``value`` whose mapping keys are lower-cased, recursively."""
    if isinstance(value, dict):
        return {str(k).lower(): lower_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [lower_keys(v) for v in value]
    return value


@cache
def recipe_schema() -> dict[str, Any]:
    text = resources.files("ggvision").joinpath("schemas/recipe.v2020-01-25.json").read_text()
    schema: dict[str, Any] = json.loads(text)
    return schema


def schema_errors(document: Any) -> list[str]:
    """Every schema violation of ``document``, as ``path: message`` lines (empty when valid)."""
    import jsonschema

    validator = jsonschema.Draft7Validator(recipe_schema())
    out = []
    for err in sorted(validator.iter_errors(lower_keys(document)), key=lambda e: list(e.path)):
        where = "/".join(str(p) for p in err.absolute_path) or "(root)"
        out.append(f"{where}: {err.message}")
    return out


def validate_recipe_file(path: Path) -> list[str]:
    """Problems with the recipe at ``path``; empty when it is valid.

    Checks: size, YAML/JSON syntax, the schema, a plain MAJOR.MINOR.PATCH ComponentVersion (the
    schema allows semver prereleases, Greengrass documents only MAJOR.MINOR.PATCH) and our
    recipe parser (the runner's, which runs the recipe on ``ggvision core``).
    """
    from ggvision.errors import RecipeError

    problems: list[str] = []
    size = path.stat().st_size
    if size > MAX_RECIPE_BYTES:
        problems.append(f"{size} bytes: larger than the {MAX_RECIPE_BYTES}-byte recipe limit")
    try:
        document = read_document(path)
    except (yaml.YAMLError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        return [*problems, f"not YAML/JSON: {exc}"]
    if not isinstance(document, dict):
        return [*problems, "a recipe is a mapping"]
    problems += schema_errors(document)
    try:
        parse_recipe(document, str(path))
    except RecipeError as exc:
        problems.append(str(exc))
    version = lower_keys(document).get("componentversion")
    if isinstance(version, str) and not PLAIN_VERSION.match(version):
        problems.append(f"ComponentVersion {version!r} is not plain MAJOR.MINOR.PATCH")
    return problems
