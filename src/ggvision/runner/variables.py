"""Recipe variables in lifecycle scripts, ``Setenv`` values and ``SkipIf``.

Supported, as in the Nucleus:

* ``{artifacts:path}``, ``{artifacts:decompressedPath}``, ``{work:path}``
* ``{configuration:/json/pointer}``: strings as they are, other values as JSON (``5``, ``true``,
  ``{"a":1}``)
* ``{iot:thingName}``, ``{kernel:rootPath}``
* ``{<dependency>:artifacts:path}``, ``{<dependency>:artifacts:decompressedPath}``,
  ``{<dependency>:work:path}``, ``{<dependency>:configuration:/ptr}`` for components named in
  ``ComponentDependencies``.

Decision (stricter than the Nucleus, which logs and leaves the text): a placeholder whose
namespace is one of ``artifacts``, ``configuration``, ``work``, ``iot``, ``kernel`` but that
cannot be resolved (unknown key, missing configuration value, undeclared dependency) is a
RecipeError, so a typo fails at start instead of reaching the shell. Anything else in braces
(``${HOME:-/tmp}``, ``${PATH:0:5}``, awk programs) is left untouched: it is not a recipe variable.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ggvision.errors import RecipeError

# {namespace:key} or {component:namespace:key}; the key cannot contain ':' or '}'.
_PLACEHOLDER = re.compile(r"\{(?:([\w.-]+):)?([\w.]+):([^:}]*)\}")
NAMESPACES = frozenset({"artifacts", "configuration", "work", "iot", "kernel"})
_CROSS_NAMESPACES = frozenset({"artifacts", "configuration", "work"})


@dataclass(frozen=True, slots=True)
class ComponentPaths:
    """What ``{<name>:...}`` can see of one component."""

    artifacts: Path
    decompressed: Path
    work: Path
    configuration: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Context:
    """Everything a component's placeholders resolve against."""

    component: str
    own: ComponentPaths
    dependencies: Mapping[str, ComponentPaths]
    thing_name: str
    root: Path


def lookup_pointer(document: Any, pointer: str) -> Any:
    """RFC 6901 lookup; raises KeyError when the pointer does not resolve."""
    if pointer == "":
        return document
    if not pointer.startswith("/"):
        raise KeyError(pointer)
    node = document
    for raw in pointer[1:].split("/"):
        part = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, Mapping):
            if part not in node:
                raise KeyError(pointer)
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise KeyError(pointer)
    return node


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def _resolve(ctx: Context, target: ComponentPaths, namespace: str, key: str) -> str | None:
    if namespace == "artifacts":
        if key == "path":
            return str(target.artifacts)
        if key == "decompressedPath":
            return str(target.decompressed)
        return None
    if namespace == "work":
        return str(target.work) if key == "path" else None
    if namespace == "configuration":
        try:
            return _text(lookup_pointer(target.configuration, key))
        except KeyError:
            return None
    if namespace == "iot":
        return ctx.thing_name if key == "thingName" else None
    if namespace == "kernel":
        return str(ctx.root) if key == "rootPath" else None
    return None


def interpolate(text: str, ctx: Context, where: str) -> str:
    """Replace every recipe variable in ``text``; ``where`` names the spot for error messages."""

    def replace(m: re.Match[str]) -> str:
        comp, namespace, key = m[1], m[2], m[3]
        if namespace not in NAMESPACES:
            return m[0]  # shell syntax such as ${VAR:-x}, not a recipe variable
        if comp is None:
            value = _resolve(ctx, ctx.own, namespace, key)
        else:
            if namespace not in _CROSS_NAMESPACES:
                raise RecipeError(
                    f"{where}: {m[0]}: only artifacts, configuration and work of another "
                    "component can be referenced"
                )
            dep = ctx.dependencies.get(comp)
            if dep is None:
                raise RecipeError(
                    f"{where}: {m[0]}: {comp} is not in ComponentDependencies of {ctx.component}"
                )
            value = _resolve(ctx, dep, namespace, key)
        if value is None:
            what = "no configuration value at" if namespace == "configuration" else "unknown key"
            raise RecipeError(f"{where}: {m[0]}: {what} {key!r}")
        return value

    return _PLACEHOLDER.sub(replace, text)


def interpolate_env(env: Mapping[str, str], ctx: Context, where: str) -> dict[str, str]:
    return {k: interpolate(v, ctx, f"{where}.{k}") for k, v in env.items()}
