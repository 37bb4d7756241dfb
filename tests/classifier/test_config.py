"""Classifier configuration: the recipe's defaults, validation errors, and ``threads: 0``."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from ggvision_classifier.config import ClassifierConfig

from ggvision.errors import ConfigError

RECIPE = Path(__file__).resolve().parents[2] / "components/com.custom.ImageClassifier/recipe.yaml"


def test_recipe_defaults_are_the_model_defaults() -> None:
    defaults = yaml.safe_load(RECIPE.read_text())["ComponentConfiguration"]["DefaultConfiguration"]
    cfg = ClassifierConfig.from_raw(defaults)
    assert cfg.threads == defaults["threads"] and cfg.inference_threads == cfg.threads


@pytest.mark.parametrize(("cpus", "want"), [(1, 1), (2, 1), (4, 3), (16, 4), (None, 1)])
def test_zero_threads_leaves_a_core_for_the_pipeline(
    monkeypatch: pytest.MonkeyPatch, cpus: int | None, want: int
) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: cpus)
    assert ClassifierConfig.from_raw({"threads": 0}).inference_threads == want


def test_negative_threads_are_refused_with_the_key() -> None:
    with pytest.raises(ConfigError, match="threads"):
        ClassifierConfig.from_raw({"threads": -1})


def test_recipe_access_control_is_exactly_what_the_component_uses() -> None:
    from ggvision.core.auth import MQTTPROXY, PUBSUB, AccessControl
    from ggvision.telemetry import TELEMETRY_TOPIC
    from ggvision.uplink import UplinkConfig

    defaults = yaml.safe_load(RECIPE.read_text())["ComponentConfiguration"]["DefaultConfiguration"]
    grants = sorted(
        (destination, op, res)
        for destination, policies in defaults["accessControl"].items()
        for policy in policies.values()
        for op in policy["operations"]
        for res in policy["resources"]
    )
    pub, sub = "aws.greengrass#PublishToTopic", "aws.greengrass#SubscribeToTopic"
    iot_pub, iot_sub = "aws.greengrass#PublishToIoTCore", "aws.greengrass#SubscribeToIoTCore"
    cfg = ClassifierConfig.from_raw(defaults)
    assert grants == sorted(
        [
            (PUBSUB, sub, cfg.inference_topic),
            (PUBSUB, pub, cfg.result_topic),
            (PUBSUB, sub, cfg.learning.topic),
            (PUBSUB, pub, cfg.learning.reply_topic),
            (PUBSUB, pub, cfg.status_topic),
            (PUBSUB, pub, TELEMETRY_TOPIC),
            (MQTTPROXY, iot_pub, "ggvision/+/results"),
            (MQTTPROXY, iot_pub, "ggvision/+/classifier/command/reply"),
            (MQTTPROXY, iot_sub, "ggvision/+/classifier/command"),
        ]
    )
    acl = AccessControl(NAME_, defaults["accessControl"])
    topic = UplinkConfig().topic.replace("{thing}", "my-thing")
    assert acl.allows(MQTTPROXY, iot_pub, topic)
    assert acl.allows(MQTTPROXY, iot_sub, "ggvision/my-thing/classifier/command")
    assert acl.allows(MQTTPROXY, iot_pub, "ggvision/my-thing/classifier/command/reply")
    assert not acl.allows(MQTTPROXY, iot_pub, "ggvision/my-thing/other")


NAME_ = "com.custom.ImageClassifier"
