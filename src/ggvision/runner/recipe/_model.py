"""The recipe as this runner holds it: frozen dataclasses for steps, lifecycles, artifacts,
manifests and dependencies, and ``Recipe.select``, which picks the manifest a platform runs.

A recipe with no ``Manifests`` but a top-level ``Lifecycle`` runs on any platform (a liberty
against the real Nucleus, see the package docstring).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Final, Literal

from ggvision.errors import RecipeError

if TYPE_CHECKING:
    from ggvision.runner.recipe._platform import Platform

STEP_NAMES: Final = ("Bootstrap", "Install", "Startup", "Run", "Shutdown", "Recover")
# The Nucleus's defaults; Run has none (it may run forever).
DEFAULT_TIMEOUTS: Final[Mapping[str, float]] = {
    "Bootstrap": 120.0,
    "Install": 120.0,
    "Startup": 120.0,
    "Shutdown": 15.0,
    "Recover": 60.0,
}

Access = Literal["NONE", "OWNER", "ALL"]


@dataclass(frozen=True, slots=True)
class SkipIf:
    """``SkipIf: onpath <executable>`` or ``SkipIf: exists <file>`` (interpolated before use)."""

    kind: Literal["onpath", "exists"]
    target: str


@dataclass(frozen=True, slots=True)
class Step:
    script: str
    timeout: float | None = None
    requires_privilege: bool = False
    setenv: Mapping[str, str] = field(default_factory=dict)
    skip_if: SkipIf | None = None


@dataclass(frozen=True, slots=True)
class Lifecycle:
    setenv: Mapping[str, str] = field(default_factory=dict)
    steps: Mapping[str, Step] = field(default_factory=dict)

    def step(self, name: str) -> Step | None:
        return self.steps.get(name)

    def timeout(self, name: str) -> float | None:
        step = self.steps.get(name)
        if step is not None and step.timeout is not None:
            return step.timeout
        return DEFAULT_TIMEOUTS.get(name)


@dataclass(frozen=True, slots=True)
class Artifact:
    uri: str
    unarchive: Literal["NONE", "ZIP"] = "NONE"
    read: Access = "OWNER"
    execute: Access = "NONE"

    @property
    def filename(self) -> str:
        """Last path segment of the URI: the file's name under ``{artifacts:path}``."""
        return PurePosixPath(self.uri.split("://", 1)[-1]).name

    @property
    def unarchived_name(self) -> str:
        """Folder under ``{artifacts:decompressedPath}`` that a ZIP artifact extracts into."""
        name = self.filename
        return name[: -len(".zip")] if name.lower().endswith(".zip") else name

    @property
    def mode(self) -> int:
        """File mode the Nucleus gives the artifact (owner can always read it back)."""
        mode = {"NONE": 0o400, "OWNER": 0o400, "ALL": 0o444}[self.read]
        mode |= {"NONE": 0, "OWNER": 0o100, "ALL": 0o111}[self.execute]
        return mode


@dataclass(frozen=True, slots=True)
class Manifest:
    platform: Mapping[str, str] = field(default_factory=dict)
    lifecycle: Lifecycle | None = None
    selections: tuple[str, ...] = ()
    artifacts: tuple[Artifact, ...] = ()
    name: str = ""


@dataclass(frozen=True, slots=True)
class Dependency:
    version_requirement: str = "*"
    dependency_type: Literal["HARD", "SOFT"] = "HARD"


@dataclass(frozen=True, slots=True)
class Selected:
    """What this device runs of a recipe: the matching manifest's lifecycle and artifacts."""

    lifecycle: Lifecycle
    artifacts: tuple[Artifact, ...]
    manifest_index: int | None


@dataclass(frozen=True, slots=True)
class Recipe:
    name: str
    version: str
    source: str
    path: Path | None = None
    description: str = ""
    publisher: str = ""
    component_type: str = "aws.greengrass.generic"
    dependencies: Mapping[str, Dependency] = field(default_factory=dict)
    default_configuration: Mapping[str, Any] = field(default_factory=dict)
    manifests: tuple[Manifest, ...] = ()
    lifecycle: Lifecycle = field(default_factory=Lifecycle)
    selections: Mapping[str, Lifecycle] = field(default_factory=dict)
    has_manifests: bool = True

    @property
    def ident(self) -> str:
        return f"{self.name}@{self.version}"

    def select(self, platform: Platform) -> Selected:
        """The first manifest whose Platform matches, resolved to a lifecycle and artifacts."""
        if not self.has_manifests:
            return Selected(self.lifecycle, (), None)
        for index, manifest in enumerate(self.manifests):
            if not platform.matches(manifest.platform):
                continue
            if manifest.lifecycle is not None:
                lifecycle = manifest.lifecycle
            elif manifest.selections:
                lifecycle = _combine(
                    [
                        self.lifecycle if key == "all" else self.selections.get(key, Lifecycle())
                        for key in manifest.selections
                    ]
                )
            else:
                lifecycle = self.lifecycle
            return Selected(lifecycle, manifest.artifacts, index)
        raise RecipeError(
            f"{self.source}: no manifest of {self.name} matches this platform ({platform}); "
            f"manifests: {[dict(m.platform) for m in self.manifests]}"
        )


def _combine(parts: Sequence[Lifecycle]) -> Lifecycle:
    """Selected sections of a global lifecycle, in order; the first to define a step wins."""
    setenv: dict[str, str] = {}
    steps: dict[str, Step] = {}
    for part in parts:
        for k, v in part.setenv.items():
            setenv.setdefault(k, v)
        for k, s in part.steps.items():
            steps.setdefault(k, s)
    return Lifecycle(setenv, steps)
