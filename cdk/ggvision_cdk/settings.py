"""The app's settings, read from CDK context (``cdk.json`` or ``-c key=value``).

Context from the CLI arrives as strings, so booleans are parsed (``"false"`` is false) and
``componentConfiguration`` may be a JSON string or a file path (``@file.json``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import constructs

CDK_DIR = Path(__file__).resolve().parents[1]
REPO = CDK_DIR.parent
STAGES = ("dev", "prod")
_NAME = re.compile(r"^[a-zA-Z0-9:_-]{1,128}$")


def _bool(value: Any) -> bool:
    return value is True or str(value).strip().lower() in ("true", "1", "yes")


@dataclass(frozen=True)
class Settings:
    stage: str = "dev"
    thing_group_name: str | None = "GreengrassVisionCores"
    thing_name: str | None = None
    create_thing_group: bool = False
    artifact_dir: Path = REPO / "greengrass-build" / "artifacts"
    components: tuple[str, ...] = ()
    component_configuration: dict[str, dict[str, Any]] = field(default_factory=dict)
    token_exchange_role_name: str = "GreengrassV2TokenExchangeRole"  # noqa: S105 - a role name
    create_token_exchange_role: bool = False
    nucleus_version: str | None = None
    nag: bool = True

    @property
    def target_kind(self) -> str:
        return "thing" if self.thing_name else "thinggroup"

    @property
    def target_name(self) -> str:
        name = self.thing_name or self.thing_group_name
        assert name is not None
        return name

    @classmethod
    def from_context(cls, node: constructs.Node) -> Settings:
        def get(key: str) -> Any:
            return node.try_get_context(key)

        stage = str(get("stage") or "dev")
        if stage not in STAGES:
            raise ValueError(f"context stage={stage!r}: one of {', '.join(STAGES)}")
        thing = get("thingName") or None
        group = None if thing else str(get("thingGroupName") or "GreengrassVisionCores")
        for key, value in (("thingName", thing), ("thingGroupName", group)):
            if value is not None and not _NAME.match(str(value)):
                raise ValueError(f"context {key}={value!r} is not a valid IoT name")
        artifact_dir = Path(str(get("artifactDir") or "../greengrass-build/artifacts"))
        if not artifact_dir.is_absolute():
            artifact_dir = (CDK_DIR / artifact_dir).resolve()
        components = get("components") or ()
        if isinstance(components, str):
            components = [c for c in re.split(r"[,\s]+", components) if c]
        return cls(
            stage=stage,
            thing_group_name=group,
            thing_name=str(thing) if thing else None,
            create_thing_group=_bool(get("createThingGroup")),
            artifact_dir=artifact_dir,
            components=tuple(str(c) for c in components),
            component_configuration=_configuration(get("componentConfiguration")),
            token_exchange_role_name=str(
                get("tokenExchangeRoleName") or "GreengrassV2TokenExchangeRole"
            ),
            create_token_exchange_role=_bool(get("createTokenExchangeRole")),
            nucleus_version=str(get("nucleusVersion")) if get("nucleusVersion") else None,
            nag=get("nag") is None or _bool(get("nag")),
        )


def _configuration(value: Any) -> dict[str, dict[str, Any]]:
    """``{component: {key: value}}`` from a dict, a JSON string or ``@path/to/file.json``."""
    if value in (None, ""):
        return {}
    if isinstance(value, str):
        if value.startswith("@"):
            path = Path(value[1:])
            value = json.loads((path if path.is_absolute() else CDK_DIR / path).read_text())
        else:
            value = json.loads(value)
    if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
        raise ValueError("componentConfiguration: {component name: {key: value}}")
    return value
