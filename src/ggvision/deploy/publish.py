"""``ggvision publish``: upload the built components, create their versions and one deployment,
with boto3, for users without CDK. The same layout and rules as the CDK app:

* artifacts go to ``s3://BUCKET/<prefix>/<name>/<version>/<sha12>/<file>``, a key that names the
  content, so an existing component version never sees its artifacts change;
* ``CreateComponentVersion`` gets the recipe with its URIs rewritten to those keys; a version
  that already exists is left alone (versions are immutable; bump to change it);
* one ``CreateDeployment`` for the thing group (or thing) lists every component, with the
  configuration merges generated and validated by the components' config models, ROLLBACK and
  NOTIFY_COMPONENTS.

Clients are passed in (``s3``, ``iot``, ``greengrassv2``), so tests use moto and a Stubber.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ggvision.deploy.components import Component, configuration_update
from ggvision.errors import GgvisionError
from ggvision.runner.recipe import read_document


@dataclass
class PublishResult:
    versions: dict[str, str] = field(default_factory=dict)
    created: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)
    uploaded: list[str] = field(default_factory=list)
    deployment_id: str | None = None


def built_components(recipe_dir: Path, artifact_dir: Path) -> list[Component]:
    """Every built recipe, with its artifact folder checked (``make build`` output)."""
    out = []
    for path in sorted(recipe_dir.glob("*")):
        if path.suffix.lower() not in (".yaml", ".yml", ".json"):
            continue
        recipe = read_document(path)
        name, version = str(recipe["ComponentName"]), str(recipe["ComponentVersion"])
        folder = artifact_dir / name / version
        for file_name in artifact_names(recipe):
            if not (folder / file_name).is_file():
                raise GgvisionError(f"{name} {version}: {folder / file_name} missing: make build")
        # ``directory`` is the artifact folder here (what publish reads).
        out.append(Component(name, version, folder, path, recipe))
    if not out:
        raise GgvisionError(f"no recipes in {recipe_dir}: make build")
    return out


def artifact_names(recipe: Mapping[str, Any]) -> list[str]:
    names = {
        str(a["URI"]).rsplit("/", 1)[-1]
        for m in recipe.get("Manifests") or []
        for a in m.get("Artifacts") or []
    }
    return sorted(names)


def content_hash(folder: Path, names: list[str]) -> str:
    """sha256 over the artifact files (names and bytes), first 12 hex digits."""
    h = hashlib.sha256()
    for name in sorted(names):
        h.update(name.encode() + b"\0")
        h.update(hashlib.sha256((folder / name).read_bytes()).digest())
    return h.hexdigest()[:12]


def s3_recipe(recipe: Mapping[str, Any], bucket: str, key_prefix: str) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(json.dumps(recipe))
    for manifest in out.get("Manifests") or []:
        for art in manifest.get("Artifacts") or []:
            art["URI"] = f"s3://{bucket}/{key_prefix}{str(art['URI']).rsplit('/', 1)[-1]}"
    return out


def _exists(s3: Any, bucket: str, key: str) -> bool:
    from botocore.exceptions import ClientError

    try:
        s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return False
        raise
    return True


def target_arn(iot: Any, *, thing_group: str | None, thing: str | None) -> str:
    """The deployment target's ARN, read from IoT (which also proves it exists)."""
    if thing:
        return str(iot.describe_thing(thingName=thing)["thingArn"])
    if thing_group:
        return str(iot.describe_thing_group(thingGroupName=thing_group)["thingGroupArn"])
    raise GgvisionError("publish needs --thing-group or --thing (or --no-deploy)")


def publish(
    components: list[Component],
    *,
    bucket: str,
    s3: Any,
    greengrass: Any,
    iot: Any | None = None,
    prefix: str = "artifacts",
    thing_group: str | None = None,
    thing: str | None = None,
    configuration: Mapping[str, Mapping[str, Any]] | None = None,
    deployment_name: str | None = None,
    log: Callable[[str], None] = print,
) -> PublishResult:
    """Upload, create versions and (with ``iot`` and a target) deploy. See the module doc."""
    from botocore.exceptions import ClientError

    configuration = configuration or {}
    unknown = set(configuration) - {c.name for c in components}
    if unknown:
        raise GgvisionError(f"configuration names unknown components: {sorted(unknown)}")
    # Validate every configuration before anything is uploaded.
    updates = {c.name: configuration_update(c, configuration.get(c.name, {})) for c in components}
    result = PublishResult()
    for c in components:
        names = artifact_names(c.recipe)
        key_prefix = f"{prefix.strip('/')}/{c.name}/{c.version}/{content_hash(c.directory, names)}/"
        for file_name in names:
            key = key_prefix + file_name
            if _exists(s3, bucket, key):
                continue
            s3.upload_file(str(c.directory / file_name), bucket, key)
            result.uploaded.append(key)
            log(f"uploaded s3://{bucket}/{key}")
        recipe = s3_recipe(c.recipe, bucket, key_prefix)
        try:
            greengrass.create_component_version(inlineRecipe=json.dumps(recipe).encode())
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConflictException":
                raise
            result.existing.append(c.name)
            log(f"{c.name} {c.version} exists: left as it is (bump the version to change it)")
        else:
            result.created.append(c.name)
            log(f"created {c.name} {c.version}")
        result.versions[c.name] = c.version
    if iot is None:
        return result
    arn = target_arn(iot, thing_group=thing_group, thing=thing)
    specs: dict[str, Any] = {}
    for c in components:
        spec: dict[str, Any] = {"componentVersion": c.version}
        update = updates[c.name]
        if update["merge"] or update.get("reset"):
            spec["configurationUpdate"] = {
                "merge": json.dumps(update["merge"], sort_keys=True, separators=(",", ":"))
            }
            if update.get("reset"):
                spec["configurationUpdate"]["reset"] = update["reset"]
        specs[c.name] = spec
    response = greengrass.create_deployment(
        targetArn=arn,
        deploymentName=deployment_name or f"greengrass-vision-{thing or thing_group}",
        components=specs,
        deploymentPolicies={
            "failureHandlingPolicy": "ROLLBACK",
            "componentUpdatePolicy": {"timeoutInSeconds": 60, "action": "NOTIFY_COMPONENTS"},
            "configurationValidationPolicy": {"timeoutInSeconds": 30},
        },
    )
    result.deployment_id = str(response["deploymentId"])
    log(f"deployment {result.deployment_id} to {arn}")
    return result
