"""Greengrass component recipes: load (YAML or JSON), normalise key case, validate, and pick the
manifest for this device.

Keys are case-insensitive, as in Greengrass, and come out in their canonical case
(``componentname`` -> ``ComponentName``). Only the recipe's own structure is normalised: keys
inside ``DefaultConfiguration``, dependency names and ``Setenv`` variable names are kept as
written. Unknown structural keys are errors (they are almost always typos such as ``Scirpt``).

Two liberties against the real Nucleus, both documented here: a recipe with no ``Manifests`` but a
top-level ``Lifecycle`` runs on any platform, and when a lifecycle defines both ``Startup`` and
``Run`` only ``Startup`` is used (with a warning).

``_model`` (the dataclasses and manifest selection), ``_platform`` (the device's platform and
matching), ``_parse`` (document -> ``Recipe``), ``_load`` (files and directories).
"""

from ggvision.runner.recipe._load import (
    RECIPE_SUFFIXES,
    load_recipe,
    load_recipe_dir,
    read_document,
)
from ggvision.runner.recipe._model import (
    DEFAULT_TIMEOUTS,
    STEP_NAMES,
    Access,
    Artifact,
    Dependency,
    Lifecycle,
    Manifest,
    Recipe,
    Selected,
    SkipIf,
    Step,
)
from ggvision.runner.recipe._parse import parse_recipe
from ggvision.runner.recipe._platform import ARCHITECTURES, Platform

__all__ = [
    "ARCHITECTURES",
    "DEFAULT_TIMEOUTS",
    "RECIPE_SUFFIXES",
    "STEP_NAMES",
    "Access",
    "Artifact",
    "Dependency",
    "Lifecycle",
    "Manifest",
    "Platform",
    "Recipe",
    "Selected",
    "SkipIf",
    "Step",
    "load_recipe",
    "load_recipe_dir",
    "parse_recipe",
    "read_document",
]
