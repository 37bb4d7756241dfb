"""Contract tests between each recipe and its component's code, derived from both (no lists of
today's keys or topics): defaults validate and cover every tunable, accessControl grants exactly
the topics the configuration uses, every recipe variable resolves, versions are plain, the
lifecycle installs into a venv and runs unprivileged and unbuffered.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from ggvision.core.auth import AccessControl
from ggvision.deploy.access import access_control, declared_grants, marked_fields, used_grants
from ggvision.deploy.components import (
    CONFIG_MODELS,
    Component,
    configuration_update,
    deep_merge,
    project_components,
)
from ggvision.deploy.recipes import PLAIN_VERSION
from ggvision.errors import ConfigError
from ggvision.runner.recipe import STEP_NAMES, Recipe, parse_recipe
from ggvision.runner.variables import ComponentPaths, Context, interpolate, interpolate_env
from ggvision.runner.versions import satisfies

REPO = Path(__file__).resolve().parents[2]
COMPONENTS = project_components(REPO)
BY_NAME = {c.name: c for c in COMPONENTS}
CONFIGURED = [c for c in COMPONENTS if c.model is not None]
IDS = [c.name for c in COMPONENTS]
CONFIGURED_IDS = [c.name for c in CONFIGURED]


def _recipe(c: Component) -> Recipe:
    return parse_recipe(dict(c.recipe), str(c.recipe_path))


def test_there_are_components_with_models() -> None:
    assert len(CONFIGURED) >= 3 and len(COMPONENTS) >= 4


@pytest.mark.parametrize("c", COMPONENTS, ids=IDS)
def test_version_is_plain_and_matches_gdk_config(c: Component) -> None:
    assert PLAIN_VERSION.match(c.version), c.version
    gdk = json.loads((c.directory / "gdk-config.json").read_text())
    entry = gdk["component"][c.name]
    assert list(gdk["component"]) == [c.name]
    assert entry["version"] == c.version, "gdk-config.json version != recipe ComponentVersion"
    build = entry["build"]
    assert build["build_system"] == "custom"
    script = (c.directory / build["custom_build_command"][-1]).resolve()
    assert script.is_file(), script


@pytest.mark.parametrize("c", COMPONENTS, ids=IDS)
def test_component_with_configuration_has_a_model(c: Component) -> None:
    keys = set(c.defaults) - {"accessControl"}
    if keys:
        assert c.name in CONFIG_MODELS, f"{c.name} has configuration but no config model"


@pytest.mark.parametrize("c", CONFIGURED, ids=CONFIGURED_IDS)
def test_defaults_validate_and_cover_every_tunable(c: Component) -> None:
    model = c.model
    assert model is not None
    config = model.from_raw(c.defaults)
    assert model.unknown_keys(c.defaults) == [], "DefaultConfiguration keys the model ignores"
    aliases = {info.alias or name for name, info in model.model_fields.items()}
    missing = aliases - set(c.defaults)
    assert not missing, f"tunables missing from DefaultConfiguration: {sorted(missing)}"
    # The recipe's defaults are the model's: a default set only in the code would drift.
    assert config == model.from_raw({}), "recipe defaults differ from the model's defaults"


@pytest.mark.parametrize("c", CONFIGURED, ids=CONFIGURED_IDS)
def test_every_topic_field_is_marked(c: Component) -> None:
    model = c.model
    assert model is not None
    marked = marked_fields(model)
    for name in model.model_fields:
        if name.endswith("_topic") or name.endswith("_topics"):
            assert name in marked, f"{name}: mark it with publishes()/subscribes()/..."


@pytest.mark.parametrize("c", CONFIGURED, ids=CONFIGURED_IDS)
def test_access_control_grants_exactly_what_the_configuration_uses(c: Component) -> None:
    model = c.model
    assert model is not None
    used = used_grants(model.from_raw(c.defaults))
    assert used, "a configured component that uses no topic?"
    declared = declared_grants(c.defaults.get("accessControl"))
    # Every grant the code needs is authorized by the core's own matcher ...
    auth = AccessControl(c.name, c.defaults.get("accessControl"))
    for destination, operation, topic in sorted(used):
        assert auth.allows(destination, operation, topic), (
            f"{c.name} uses {operation} on {topic!r} but accessControl does not allow it"
        )
    # ... and nothing else is granted (least privilege: no extra topic, no wildcard).
    assert declared == used, f"extra grants: {sorted(declared - used)}"


def test_generated_access_control_round_trips() -> None:
    grants = {
        ("aws.greengrass.ipc.pubsub", "aws.greengrass#PublishToTopic", "a/b"),
        ("aws.greengrass.ipc.pubsub", "aws.greengrass#PublishToTopic", "c"),
        ("aws.greengrass.ipc.pubsub", "aws.greengrass#SubscribeToTopic", "d"),
        ("aws.greengrass.ipc.mqttproxy", "aws.greengrass#PublishToIoTCore", "dt/x"),
    }
    doc = access_control("com.example.X", grants)
    assert declared_grants(doc) == grants
    auth = AccessControl("com.example.X", doc)
    assert all(auth.allows(*g) for g in grants)
    assert not auth.allows("aws.greengrass.ipc.pubsub", "aws.greengrass#SubscribeToTopic", "c")


@pytest.mark.parametrize("c", CONFIGURED, ids=CONFIGURED_IDS)
def test_configuration_update_follows_topic_changes(c: Component) -> None:
    model = c.model
    assert model is not None
    marks = marked_fields(model)
    field = sorted(f for f in marks if model.model_fields[f].annotation is str)[0]  # one topic
    key = model.model_fields[field].alias or field
    update = configuration_update(c, {key: "site/renamed"})
    merged = deep_merge(c.defaults, update["merge"])
    merged["accessControl"] = update["merge"]["accessControl"]  # RESET then MERGE
    assert update["reset"] == ["/accessControl"]
    assert declared_grants(merged["accessControl"]) == used_grants(model.from_raw(merged))
    # A change that touches no topic carries no accessControl.
    plain = configuration_update(c, {})
    assert plain == {"merge": {}}
    with pytest.raises(ConfigError):
        configuration_update(c, {key: 12345})
    with pytest.raises(ConfigError, match="accessControl"):
        configuration_update(c, {"accessControl": {}})


def _fake_paths(c: Component, root: Path) -> ComponentPaths:
    return ComponentPaths(
        artifacts=root / "artifacts" / c.name / c.version,
        decompressed=root / "artifacts-unarchived" / c.name / c.version,
        work=root / "work" / c.name,
        configuration=c.defaults,
    )


@pytest.mark.parametrize("c", COMPONENTS, ids=IDS)
def test_every_recipe_variable_resolves(c: Component, tmp_path: Path) -> None:
    recipe = _recipe(c)
    deps = {}
    for dep_name, dep in recipe.dependencies.items():
        assert dep_name in BY_NAME, f"dependency {dep_name} is not a component of this repo"
        target = BY_NAME[dep_name]
        assert satisfies(target.version, dep.version_requirement), (
            f"{c.name} needs {dep_name} {dep.version_requirement}, repo has {target.version}"
        )
        deps[dep_name] = _fake_paths(target, tmp_path)
    ctx = Context(c.name, _fake_paths(c, tmp_path), deps, "thing", tmp_path)
    for manifest in recipe.manifests:
        lifecycle = manifest.lifecycle
        if lifecycle is None:
            continue
        interpolate_env(lifecycle.setenv, ctx, c.name)
        for step_name, step in lifecycle.steps.items():
            where = f"{c.name} {step_name}"
            text = interpolate(step.script, ctx, where)
            assert not re.search(r"\{(artifacts|configuration|work|iot|kernel):", text)
            interpolate_env(step.setenv, ctx, where)
            if step.skip_if is not None:
                interpolate(step.skip_if.target, ctx, where)


@pytest.mark.parametrize("c", CONFIGURED, ids=CONFIGURED_IDS)
def test_lifecycle_is_a_venv_install_and_an_unprivileged_unbuffered_run(c: Component) -> None:
    recipe = _recipe(c)
    archs = {str(m.platform.get("architecture")) for m in recipe.manifests}
    assert {"amd64", "aarch64"} <= archs, archs
    for manifest in recipe.manifests:
        assert manifest.lifecycle is not None
        steps = manifest.lifecycle.steps
        assert set(steps) <= set(STEP_NAMES)
        for name, step in steps.items():
            assert not step.requires_privilege, f"{name} must not need root"
            assert "sudo" not in step.script
        install = steps["Install"].script
        assert "-m venv" in install and "{work:path}/venv" in install
        for pip in re.findall(r"\S*pip\S*\s+install", install):
            assert pip.startswith('"{work:path}/venv/bin/pip'), f"global pip: {pip}"
        assert "--user" not in install
        # Our wheels only from the artifact, and always (the venv outlives component versions).
        assert "--no-index" in install and "--force-reinstall" in install
        assert "-r " in install and "requirements.txt" in install
        run = steps["Run"].script
        assert "{work:path}/venv/bin/python" in run
        assert " -u " in run or manifest.lifecycle.setenv.get("PYTHONUNBUFFERED") == "1"
        for artifact in manifest.artifacts:
            assert artifact.unarchive == "ZIP"


def test_classifier_needs_the_model_store_hard() -> None:
    recipe = _recipe(BY_NAME["com.custom.ImageClassifier"])
    store = recipe.dependencies["com.custom.ImageClassification.ModelStore"]
    assert store.dependency_type == "HARD"
    lifecycle = recipe.manifests[0].lifecycle
    assert lifecycle is not None
    env = lifecycle.setenv
    assert env["GGV_MODEL_STORE"] == (
        "{com.custom.ImageClassification.ModelStore:artifacts:decompressedPath}"
    )


def test_marker_details() -> None:
    from pydantic import Field

    from ggvision import telemetry
    from ggvision.config import GREENGRASS_TELEMETRY_TOPIC, ComponentConfig, publishes
    from ggvision.config import publishes_to_iot_core as iot_pub
    from ggvision.config import subscribes_to_iot_core as iot_sub

    assert GREENGRASS_TELEMETRY_TOPIC == telemetry.TELEMETRY_TOPIC

    class Demo(ComponentConfig):
        status_topic: str = Field("s/x", json_schema_extra=publishes(also=["$local/t"]))
        up_topic: str = Field("a/{thing}/b", json_schema_extra=iot_pub())
        cmd_topic: str = Field("", json_schema_extra=iot_sub(when_empty="c/{thing}"))
        off_topic: str = Field("", json_schema_extra=iot_pub())

    pub, mqtt = "aws.greengrass.ipc.pubsub", "aws.greengrass.ipc.mqttproxy"
    assert used_grants(Demo()) == {
        (pub, "aws.greengrass#PublishToTopic", "s/x"),
        (pub, "aws.greengrass#PublishToTopic", "$local/t"),
        (mqtt, "aws.greengrass#PublishToIoTCore", "a/+/b"),
        (mqtt, "aws.greengrass#SubscribeToIoTCore", "c/+"),
    }
    assert (mqtt, "aws.greengrass#SubscribeToIoTCore", "d") in used_grants(Demo(cmd_topic="d"))


def test_a_camera_update_of_its_consumers_status_topics_follows_into_access_control() -> None:
    camera = BY_NAME["com.custom.CameraSource"]
    assert camera.model is not None
    update = configuration_update(camera, {"consumerStatusTopics": ["site/classifier/status"]})
    merged = deep_merge(camera.defaults, update["merge"])
    merged["accessControl"] = update["merge"]["accessControl"]
    granted = declared_grants(merged["accessControl"])
    subscribe = ("aws.greengrass.ipc.pubsub", "aws.greengrass#SubscribeToTopic")
    assert (*subscribe, "site/classifier/status") in granted
    assert (*subscribe, "local/status/com.custom.ImageClassifier") not in granted
    assert granted == used_grants(camera.model.from_raw(merged))
