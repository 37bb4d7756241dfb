"""Deployment-style configuration updates: ``{"Comp": {"MERGE": {...}, "RESET": ["/ptr"]}}``.

The same document shape ``greengrass-cli deployment create --update-config`` takes. RESET runs
first (each JSON pointer goes back to the recipe default, or disappears if the default has no
such key; ``""`` resets everything), then MERGE deep-merges (objects merge key by key, every
other value, lists included, replaces). The merge itself is the core's
(:func:`ggvision.core.deployments.apply_update`), so a component starts with exactly the
configuration a later ``core deploy`` of the same update would give it.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ggvision.core.deployments import apply_update
from ggvision.errors import ConfigError
from ggvision.runner.recipe import Recipe

Update = dict[str, Any]  # {"MERGE": {...}, "RESET": [...]}


def read_update_argument(value: str) -> dict[str, Update]:
    """An ``--update-config`` argument: inline JSON (starts with ``{``) or a JSON file's path."""
    text = value
    source = "--update-config"
    if not value.lstrip().startswith("{"):
        path = Path(value)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read configuration update: {exc}") from exc
        source = str(path)
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{source}: not valid JSON: {exc}") from exc
    return normalise_update(doc, source)


def normalise_update(doc: Any, source: str = "configuration update") -> dict[str, Update]:
    """Check the document's shape; ``merge``/``reset`` in any case; MERGE may be a JSON string
    (as in the CreateDeployment API)."""
    if not isinstance(doc, Mapping):
        raise ConfigError(f"{source}: must be an object of component name -> update")
    out: dict[str, Update] = {}
    for component, update in doc.items():
        if not isinstance(update, Mapping):
            raise ConfigError(f"{source}: update for {component} must be an object")
        norm: Update = {}
        for key, value in update.items():
            canon = str(key).upper()
            if canon not in ("MERGE", "RESET") or canon in norm:
                raise ConfigError(
                    f"{source}: {component}: keys must be MERGE and RESET, got {key!r}"
                )
            norm[canon] = value
        merge = norm.get("MERGE")
        if isinstance(merge, str):
            try:
                merge = norm["MERGE"] = json.loads(merge)
            except ValueError as exc:
                raise ConfigError(f"{source}: {component}: MERGE string is not JSON") from exc
        if merge is not None and not isinstance(merge, Mapping):
            raise ConfigError(f"{source}: {component}: MERGE must be an object")
        reset = norm.get("RESET")
        if reset is not None and (
            not isinstance(reset, list) or not all(isinstance(p, str) for p in reset)
        ):
            raise ConfigError(f"{source}: {component}: RESET must be a list of JSON pointers")
        for ptr in reset or []:
            if ptr and not ptr.startswith("/"):
                raise ConfigError(
                    f"{source}: {component}: RESET path {ptr!r} must be '' or start with '/'"
                )
        out[str(component)] = norm
    return out


def initial_configuration(recipe: Recipe, update: Update | None) -> dict[str, Any]:
    """The configuration a component starts with: its defaults with ``update`` applied."""
    defaults = dict(recipe.default_configuration)
    if not update:
        return copy.deepcopy(defaults)
    try:
        return apply_update(defaults, defaults, update)
    except ConfigError as exc:
        raise ConfigError(f"{recipe.name}: {exc}") from exc
