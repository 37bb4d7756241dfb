"""The project's components: recipe, configuration model, defaults.

Components depend on this library, never the reverse, so models are named by import path and
loaded on demand (the component's package must be installed, as it is in the dev venv).
"""

from __future__ import annotations

import copy
import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ggvision.config import ComponentConfig
from ggvision.deploy.access import access_control, used_grants
from ggvision.errors import ConfigError

# Component name -> "module:Class" of its ComponentConfig; artifact-only components have none.
CONFIG_MODELS: dict[str, str] = {
    "com.custom.ImageClassifier": "ggvision_classifier.config:ClassifierConfig",
    "com.custom.ObjectDetector": "ggvision_detector.config:DetectorConfig",
    "com.custom.CameraSource": "ggvision_camera.config:CameraConfig",
    "com.custom.requester": "ggvision_requester.config:RequesterConfig",
    "com.custom.LiveView": "ggvision_liveview.config:LiveViewConfig",
}
RESERVED_KEYS = frozenset({"accessControl"})


def config_model(name: str) -> type[ComponentConfig] | None:
    spec = CONFIG_MODELS.get(name)
    if spec is None:
        return None
    module, _, attr = spec.partition(":")
    model = getattr(importlib.import_module(module), attr)
    assert isinstance(model, type) and issubclass(model, ComponentConfig)
    return model


@dataclass(frozen=True)
class Component:
    name: str
    version: str
    directory: Path
    recipe_path: Path
    recipe: Mapping[str, Any]

    @property
    def defaults(self) -> dict[str, Any]:
        conf = self.recipe.get("ComponentConfiguration") or {}
        return copy.deepcopy(dict(conf.get("DefaultConfiguration") or {}))

    @property
    def model(self) -> type[ComponentConfig] | None:
        return config_model(self.name)


def project_components(repo: Path) -> list[Component]:
    """Every ``components/<name>/recipe.yaml`` of the repository, sorted by name."""
    out = []
    for path in sorted((repo / "components").glob("*/recipe.yaml")):
        recipe = yaml.safe_load(path.read_text(encoding="utf-8"))
        out.append(
            Component(
                name=str(recipe["ComponentName"]),
                version=str(recipe["ComponentVersion"]),
                directory=path.parent,
                recipe_path=path,
                recipe=recipe,
            )
        )
    return out


def deep_merge(base: Mapping[str, Any], merge: Mapping[str, Any]) -> dict[str, Any]:
    """Greengrass MERGE semantics: maps merge key by key, anything else replaces."""
    out = copy.deepcopy(dict(base))
    for key, value in merge.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def configuration_update(component: Component, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The deployment's ``{"merge": {...}, "reset": [...]}`` for ``overrides``, validated by the
    component's model (ConfigError when invalid).

    When the overrides change which topics the component uses, the update resets
    ``/accessControl`` and merges the regenerated least-privilege one: a deployment grants what
    the new configuration needs, and nothing more.
    """
    reserved = sorted(RESERVED_KEYS & set(overrides))
    if reserved:
        raise ConfigError(
            f"{component.name}: {', '.join(reserved)} is generated from the topic fields; "
            "set the topics instead"
        )
    merge = copy.deepcopy(dict(overrides))
    update: dict[str, Any] = {"merge": merge}
    model = component.model
    if model is None:
        return update
    defaults = component.defaults
    before = used_grants(model.from_raw(defaults))
    after = used_grants(model.from_raw(deep_merge(defaults, merge)))
    if after != before:
        merge["accessControl"] = access_control(component.name, after)
        update["reset"] = ["/accessControl"]
    return update
