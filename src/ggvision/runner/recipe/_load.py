"""Recipe files: read one (JSON for ``.json``, else YAML) or a whole recipe directory, and
validate each through the parser."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

import yaml

from ggvision.errors import RecipeError
from ggvision.runner.recipe._model import Recipe
from ggvision.runner.recipe._parse import parse_recipe

RECIPE_SUFFIXES: Final = (".yaml", ".yml", ".json")


def read_document(path: Path) -> Any:
    """A recipe file's data: JSON for ``.json``, else YAML. Raises OSError when it cannot be
    read, ValueError (UnicodeDecodeError, JSONDecodeError) or yaml.YAMLError when it cannot be
    parsed."""
    text = path.read_text(encoding="utf-8")
    return json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)


def load_recipe(path: Path) -> Recipe:
    """Read and validate one recipe file (``.json``, else YAML)."""
    try:
        data = read_document(path)
    except OSError as exc:
        raise RecipeError(f"{path}: cannot read recipe: {exc.strerror or exc}") from exc
    except (ValueError, yaml.YAMLError) as exc:
        raise RecipeError(
            f"{path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {exc}"
        ) from exc
    return parse_recipe(data, str(path), path)


def load_recipe_dir(directory: Path) -> list[Recipe]:
    """Every ``*.yaml``, ``*.yml`` and ``*.json`` recipe directly in ``directory``, by name."""
    if not directory.is_dir():
        raise RecipeError(f"{directory}: recipe directory does not exist")
    files = sorted(
        p for p in directory.iterdir() if p.is_file() and p.suffix.lower() in RECIPE_SUFFIXES
    )
    recipes = [load_recipe(p) for p in files]
    seen: dict[tuple[str, str], Recipe] = {}
    for r in recipes:
        other = seen.get((r.name, r.version))
        if other is not None:
            raise RecipeError(f"{r.source}: {r.ident} is also defined in {other.source}")
        seen[(r.name, r.version)] = r
    return recipes
