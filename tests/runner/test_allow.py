from __future__ import annotations

import pytest

from ggvision.errors import ConfigError
from ggvision.runner.allow import access_control, parse_allow


def test_allow_specs_build_access_control() -> None:
    acl = access_control(
        [
            "pubsub:publish:local/inference",
            "pubsub:subscribe:local/*",
            "pubsub:subscribe:local/result",
            "mqttproxy:publish:topic/x:with:colons",
        ]
    )
    pubsub = acl["aws.greengrass.ipc.pubsub"]
    assert sorted((p["operations"][0], tuple(p["resources"])) for p in pubsub.values()) == [
        ("aws.greengrass#PublishToTopic", ("local/inference",)),
        ("aws.greengrass#SubscribeToTopic", ("local/*", "local/result")),
    ]
    [mqtt] = acl["aws.greengrass.ipc.mqttproxy"].values()
    assert mqtt["operations"] == ["aws.greengrass#PublishToIoTCore"]
    assert mqtt["resources"] == ["topic/x:with:colons"]


def test_full_names_and_wildcard_operation() -> None:
    assert parse_allow("aws.greengrass.ipc.pubsub:PublishToTopic:a") == (
        "aws.greengrass.ipc.pubsub",
        "aws.greengrass#PublishToTopic",
        "a",
    )
    assert parse_allow("pubsub:*:a")[1] == "*"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("pubsub:publish", "SERVICE:OPERATION:RESOURCE"),
        ("pubsub:shout:a", "publish, subscribe or *"),
        ("radio:publish:a", "unknown service 'radio'"),
    ],
)
def test_bad_allow_specs(spec: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_allow(spec)
    assert message in str(err.value)
