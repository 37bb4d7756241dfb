"""Recipe parsing: a decoded recipe document -> a validated ``Recipe``.

Keys are case-insensitive, as in Greengrass, and come out in their canonical case
(``componentname`` -> ``ComponentName``). Only the recipe's own structure is normalised: keys
inside ``DefaultConfiguration``, dependency names and ``Setenv`` variable names are kept as
written. Unknown structural keys are errors (they are almost always typos such as ``Scirpt``).
When a lifecycle defines both ``Startup`` and ``Run`` only ``Startup`` is used (with a warning).
"""

from __future__ import annotations

import datetime
import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any, Literal, NoReturn

from ggvision.errors import RecipeError
from ggvision.runner.recipe._model import (
    STEP_NAMES,
    Access,
    Artifact,
    Dependency,
    Lifecycle,
    Manifest,
    Recipe,
    SkipIf,
    Step,
)
from ggvision.runner.versions import check_requirement, parse_version

# The package's name, as before the split: log lines keep their "logger" field.
log = logging.getLogger("ggvision.runner.recipe")

_TOP_KEYS = (
    "RecipeFormatVersion",
    "ComponentName",
    "ComponentVersion",
    "ComponentDescription",
    "ComponentPublisher",
    "ComponentType",
    "ComponentSource",
    "ComponentConfiguration",
    "ComponentDependencies",
    "Manifests",
    "Lifecycle",
)
_CONFIGURATION_KEYS = ("DefaultConfiguration",)
_DEPENDENCY_KEYS = ("VersionRequirement", "DependencyType")
_MANIFEST_KEYS = ("Name", "Platform", "Lifecycle", "Selections", "Artifacts")
_PLATFORM_KEYS = ("os", "architecture", "architecture.detail")
_ARTIFACT_KEYS = ("URI", "Unarchive", "Permission", "Digest", "Algorithm")
_PERMISSION_KEYS = ("Read", "Execute")
_LIFECYCLE_KEYS = ("Setenv", *STEP_NAMES)
_STEP_KEYS = ("Script", "Timeout", "RequiresPrivilege", "Setenv", "SkipIf", "BootstrapOnRollback")

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_SKIP_IF = re.compile(r"^\s*(onpath|exists)\s+(.+?)\s*$", re.IGNORECASE)


class _Parser:
    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, where: str, message: str) -> NoReturn:
        raise RecipeError(
            f"{self.source}: {where}: {message}" if where else f"{self.source}: {message}"
        )

    def mapping(
        self, raw: Any, keys: Sequence[str], where: str, *, extra_ok: bool = False
    ) -> dict[str, Any]:
        """``raw`` with its keys in canonical case; unknown keys fail unless ``extra_ok``."""
        if raw is None:
            return {}
        if not isinstance(raw, Mapping):
            self.fail(where, f"must be a mapping, got {_kind(raw)}")
        table = {k.lower(): k for k in keys}
        out: dict[str, Any] = {}
        for key, value in raw.items():
            if not isinstance(key, str):
                self.fail(where, f"key {key!r} must be a string")
            canon = table.get(key.lower())
            if canon is None:
                if not extra_ok:
                    self.fail(
                        _join(where, key), f"unknown key (expected one of: {', '.join(keys)})"
                    )
                canon = key
            if canon in out:
                self.fail(_join(where, key), "given twice (recipe keys are case-insensitive)")
            out[canon] = value
        return out

    def string(self, raw: Any, where: str, *, required: bool = False) -> str:
        if raw is None:
            if required:
                self.fail(where, "is required")
            return ""
        if not isinstance(raw, str):
            numeric = isinstance(raw, int | float) and not isinstance(raw, bool)
            hint = " (quote it in YAML)" if numeric else ""
            self.fail(where, f"must be a string, got {_kind(raw)} {raw!r}{hint}")
        if required and not raw.strip():
            self.fail(where, "must not be empty")
        return raw

    def boolean(self, raw: Any, where: str) -> bool:
        if raw is None:
            return False
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.strip().lower() in ("true", "false"):
            return raw.strip().lower() == "true"
        self.fail(where, f"must be true or false, got {raw!r}")

    def timeout(self, raw: Any, where: str) -> float | None:
        if raw is None:
            return None
        try:
            if isinstance(raw, bool):
                raise ValueError
            value = float(raw)
        except (TypeError, ValueError):
            self.fail(where, f"must be a number of seconds, got {raw!r}")
        if not value > 0:
            self.fail(where, f"must be positive, got {raw!r}")
        return value

    def setenv(self, raw: Any, where: str) -> dict[str, str]:
        env = self.mapping(raw, (), where, extra_ok=True)
        out: dict[str, str] = {}
        for name, value in env.items():
            if not name or "=" in name or "\0" in name:
                self.fail(_join(where, name), "is not a valid environment variable name")
            if value is None:
                out[name] = ""
            elif isinstance(value, bool):
                out[name] = "true" if value else "false"
            elif isinstance(value, str | int | float):
                out[name] = str(value)
            else:
                self.fail(_join(where, name), f"must be a string, got {_kind(value)}")
        return out

    def step(self, raw: Any, where: str) -> Step:
        if isinstance(raw, str):
            return Step(script=raw)
        fields = self.mapping(raw, _STEP_KEYS, where)
        skip_if = None
        if fields.get("SkipIf") is not None:
            text = self.string(fields["SkipIf"], _join(where, "SkipIf"))
            m = _SKIP_IF.match(text)
            if m is None:
                self.fail(
                    _join(where, "SkipIf"),
                    f"must be 'onpath <cmd>' or 'exists <file>', got {text!r}",
                )
            kind: Literal["onpath", "exists"] = "onpath" if m[1].lower() == "onpath" else "exists"
            skip_if = SkipIf(kind, m[2])
        return Step(
            script=self.string(fields.get("Script"), _join(where, "Script"), required=True),
            timeout=self.timeout(fields.get("Timeout"), _join(where, "Timeout")),
            requires_privilege=self.boolean(
                fields.get("RequiresPrivilege"), _join(where, "RequiresPrivilege")
            ),
            setenv=self.setenv(fields.get("Setenv"), _join(where, "Setenv")),
            skip_if=skip_if,
        )

    def lifecycle(self, raw: Any, where: str) -> Lifecycle:
        fields = self.mapping(raw, _LIFECYCLE_KEYS, where)
        return self._lifecycle_from(fields, where)

    def _lifecycle_from(self, fields: Mapping[str, Any], where: str) -> Lifecycle:
        steps = {
            name: self.step(fields[name], _join(where, name))
            for name in STEP_NAMES
            if fields.get(name) is not None
        }
        if "Startup" in steps and "Run" in steps:
            log.warning(
                "%s: %s defines both Startup and Run; using Startup",
                self.source,
                where,
                extra={"event": "recipe.startup_and_run", "recipe": self.source},
            )
            del steps["Run"]
        return Lifecycle(self.setenv(fields.get("Setenv"), _join(where, "Setenv")), steps)

    def artifact(self, raw: Any, where: str) -> Artifact:
        fields = self.mapping(raw, _ARTIFACT_KEYS, where)
        uri = self.string(fields.get("URI"), _join(where, "URI"), required=True)
        name = PurePosixPath(uri.split("://", 1)[-1]).name
        if not name or name in (".", ".."):
            self.fail(_join(where, "URI"), f"{uri!r} does not end in a file name")
        unarchive = self.string(fields.get("Unarchive"), _join(where, "Unarchive")).upper()
        if unarchive not in ("", "NONE", "ZIP"):
            self.fail(_join(where, "Unarchive"), f"must be ZIP or NONE, got {unarchive!r}")
        perm = self.mapping(fields.get("Permission"), _PERMISSION_KEYS, _join(where, "Permission"))
        read = self._access(perm.get("Read"), _join(where, "Permission.Read"), "OWNER")
        execute = self._access(perm.get("Execute"), _join(where, "Permission.Execute"), "NONE")
        return Artifact(uri, "ZIP" if unarchive == "ZIP" else "NONE", read, execute)

    def _access(self, raw: Any, where: str, default: Access) -> Access:
        text = self.string(raw, where).upper() or default
        if text == "NONE":
            return "NONE"
        if text == "OWNER":
            return "OWNER"
        if text == "ALL":
            return "ALL"
        self.fail(where, f"must be NONE, OWNER or ALL, got {text!r}")

    def platform(self, raw: Any, where: str) -> dict[str, str]:
        fields = self.mapping(raw, _PLATFORM_KEYS, where, extra_ok=True)
        return {k: self.string(v, _join(where, k), required=True) for k, v in fields.items()}

    def dependency(self, raw: Any, where: str) -> Dependency:
        fields = self.mapping(raw, _DEPENDENCY_KEYS, where)
        req = self.string(fields.get("VersionRequirement"), _join(where, "VersionRequirement"))
        req = req.strip() or "*"
        try:
            check_requirement(req)
        except RecipeError as exc:
            self.fail(_join(where, "VersionRequirement"), str(exc))
        kind = self.string(fields.get("DependencyType"), _join(where, "DependencyType")).upper()
        if kind not in ("", "HARD", "SOFT"):
            self.fail(_join(where, "DependencyType"), f"must be HARD or SOFT, got {kind!r}")
        return Dependency(req, "SOFT" if kind == "SOFT" else "HARD")

    def json_value(self, raw: Any, where: str) -> Any:
        """Configuration must survive JSON: string keys, no YAML dates or other objects."""
        if isinstance(raw, Mapping):
            out: dict[str, Any] = {}
            for k, v in raw.items():
                if not isinstance(k, str):
                    self.fail(where, f"configuration key {k!r} must be a string (quote it)")
                out[k] = self.json_value(v, f"{where}/{k}")
            return out
        if isinstance(raw, list):
            return [self.json_value(v, f"{where}/{i}") for i, v in enumerate(raw)]
        if raw is None or isinstance(raw, str | int | float | bool):
            return raw
        if isinstance(raw, datetime.date):
            self.fail(where, f"YAML read {raw!r} as a date; quote it to keep it a string")
        self.fail(where, f"unsupported value {raw!r}")

    def recipe(self, raw: Any, path: Path | None) -> Recipe:
        top = self.mapping(raw, _TOP_KEYS, "")
        name = self.string(top.get("ComponentName"), "ComponentName", required=True)
        if _NAME.match(name) is None or ".." in name:
            self.fail("ComponentName", f"{name!r} must be letters, digits, '.', '_' or '-'")
        version = self.string(top.get("ComponentVersion"), "ComponentVersion", required=True)
        try:
            parse_version(version)
        except RecipeError as exc:
            self.fail("ComponentVersion", str(exc))

        conf = self.mapping(
            top.get("ComponentConfiguration"), _CONFIGURATION_KEYS, "ComponentConfiguration"
        )
        default = conf.get("DefaultConfiguration")
        if default is not None and not isinstance(default, Mapping):
            self.fail(
                "ComponentConfiguration.DefaultConfiguration",
                f"must be a mapping, got {_kind(default)}",
            )
        default_configuration = self.json_value(
            default or {}, "ComponentConfiguration.DefaultConfiguration"
        )

        deps_raw = self.mapping(
            top.get("ComponentDependencies"), (), "ComponentDependencies", extra_ok=True
        )
        dependencies: dict[str, Dependency] = {}
        for dep_name, dep in deps_raw.items():
            where = _join("ComponentDependencies", dep_name)
            if dep_name == name:
                self.fail(where, "a component cannot depend on itself")
            dependencies[dep_name] = self.dependency(dep, where)

        manifests_raw = top.get("Manifests")
        if manifests_raw is not None and not isinstance(manifests_raw, list):
            self.fail("Manifests", f"must be a list, got {_kind(manifests_raw)}")
        manifests = tuple(
            self.manifest(m, f"Manifests[{i}]") for i, m in enumerate(manifests_raw or [])
        )

        lifecycle, selections = self.global_lifecycle(top.get("Lifecycle"), manifests)
        if not manifests and top.get("Lifecycle") is None:
            self.fail("", "recipe has neither Manifests nor Lifecycle")
        return Recipe(
            name=name,
            version=version,
            source=self.source,
            path=path,
            description=self.string(top.get("ComponentDescription"), "ComponentDescription"),
            publisher=self.string(top.get("ComponentPublisher"), "ComponentPublisher"),
            component_type=self.string(top.get("ComponentType"), "ComponentType")
            or "aws.greengrass.generic",
            dependencies=dependencies,
            default_configuration=default_configuration,
            manifests=manifests,
            lifecycle=lifecycle,
            selections=selections,
            has_manifests=bool(manifests),
        )

    def manifest(self, raw: Any, where: str) -> Manifest:
        fields = self.mapping(raw, _MANIFEST_KEYS, where)
        selections_raw = fields.get("Selections") or []
        if not isinstance(selections_raw, list):
            self.fail(_join(where, "Selections"), "must be a list of selection keys")
        artifacts_raw = fields.get("Artifacts") or []
        if not isinstance(artifacts_raw, list):
            self.fail(_join(where, "Artifacts"), "must be a list")
        artifacts = tuple(
            self.artifact(a, f"{where}.Artifacts[{i}]") for i, a in enumerate(artifacts_raw)
        )
        names = [a.filename for a in artifacts]
        if len(set(names)) != len(names):
            self.fail(_join(where, "Artifacts"), f"two artifacts share a file name: {names}")
        return Manifest(
            platform=self.platform(fields.get("Platform"), _join(where, "Platform")),
            lifecycle=(
                None
                if fields.get("Lifecycle") is None
                else self.lifecycle(fields["Lifecycle"], _join(where, "Lifecycle"))
            ),
            selections=tuple(
                self.string(s, f"{where}.Selections[{i}]", required=True)
                for i, s in enumerate(selections_raw)
            ),
            artifacts=artifacts,
            name=self.string(fields.get("Name"), _join(where, "Name")),
        )

    def global_lifecycle(
        self, raw: Any, manifests: Sequence[Manifest]
    ) -> tuple[Lifecycle, dict[str, Lifecycle]]:
        """Top-level Lifecycle: its plain steps, plus sections named by selection keys."""
        selection_keys = {s for m in manifests for s in m.selections if s != "all"}
        fields = self.mapping(raw, _LIFECYCLE_KEYS, "Lifecycle", extra_ok=True)
        plain = {k: v for k, v in fields.items() if k in _LIFECYCLE_KEYS}
        selections: dict[str, Lifecycle] = {}
        for key, value in fields.items():
            if key in _LIFECYCLE_KEYS:
                continue
            if key not in selection_keys:
                self.fail(
                    _join("Lifecycle", key),
                    f"unknown key: not a lifecycle step ({', '.join(_LIFECYCLE_KEYS)}) nor a "
                    "selection key named by a manifest's Selections",
                )
            selections[key] = self.lifecycle(value, _join("Lifecycle", key))
        return self._lifecycle_from(plain, "Lifecycle"), selections


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _kind(value: Any) -> str:
    return {dict: "mapping", list: "list", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), type(value).__name__
    )


def parse_recipe(data: Any, source: str = "<recipe>", path: Path | None = None) -> Recipe:
    """Validate an already-decoded recipe document."""
    return _Parser(source).recipe(data, path)
