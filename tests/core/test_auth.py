"""Authorization from recipe accessControl: the matchers, and the denial paths (real client)."""

from __future__ import annotations

import base64

import pytest

from ggvision.core.auth import MQTTPROXY, PUBSUB, AccessControl
from ggvision.testing.harness import pubsub_policy
from tests.conftest import AgentFactory

PUB = "aws.greengrass#PublishToTopic"
SUB = "aws.greengrass#SubscribeToTopic"
IOT_PUB = "aws.greengrass#PublishToIoTCore"


def _acl(destination: str, resources: list[str], ops: list[str]) -> AccessControl:
    return AccessControl("c", {destination: {"p1": {"operations": ops, "resources": resources}}})


@pytest.mark.parametrize(
    ("resource", "topic", "allowed"),
    [
        ("local/inference", "local/inference", True),
        ("local/inference", "local/inference2", False),
        ("local/*", "local/a/b", True),  # '*' spans levels
        ("local/*", "local/+", True),
        ("local/*", "local/#", True),
        ("test/topic/#", "test/topic/#", True),  # MQTT wildcards are literal for local pubsub
        ("test/topic/#", "test/topic/x", False),
        ("a/+/c", "a/b/c", False),
        ("a/${*}", "a/*", True),
        ("a/${*}", "a/b", False),
        ("price${$}", "price$", True),
        ("what?", "what?", False),  # unescaped '?' invalidates the resource
        ("what${?}", "what?", True),
        ("*", "anything/goes", True),
    ],
)
def test_standard_matcher(resource: str, topic: str, allowed: bool) -> None:
    assert _acl(PUBSUB, [resource], [PUB]).allows(PUBSUB, PUB, topic) is allowed


@pytest.mark.parametrize(
    ("resource", "topic", "allowed"),
    [
        ("things/+/results", "things/cam1/results", True),
        ("things/+/results", "things/a/b/results", False),
        ("things/#", "things", True),  # MQTT: 'a/#' also matches 'a'
        ("things/#", "things/a/b", True),
        ("things/*", "things/a/b", True),
        ("things/cam1", "things/cam2", False),
    ],
)
def test_mqtt_matcher(resource: str, topic: str, allowed: bool) -> None:
    assert _acl(MQTTPROXY, [resource], [IOT_PUB]).allows(MQTTPROXY, IOT_PUB, topic) is allowed


def test_operation_wildcard_and_wrong_operation() -> None:
    acl = _acl(PUBSUB, ["t"], ["*"])
    assert acl.allows(PUBSUB, PUB, "t")
    assert acl.allows(PUBSUB, SUB, "t")
    assert not _acl(PUBSUB, ["t"], [PUB]).allows(PUBSUB, SUB, "t")
    # An operation of another destination never matches here.
    assert not acl.allows(PUBSUB, IOT_PUB, "t")


def test_null_resource_matches_any_policy_with_the_operation_and_empty_never() -> None:
    acl = _acl(PUBSUB, ["x"], [PUB])
    assert acl.allows(PUBSUB, PUB, None)
    assert not acl.allows(PUBSUB, PUB, "")
    assert not AccessControl("c", None).allows(PUBSUB, PUB, None)


def test_unknown_destination_and_policy_without_resources_grant_nothing() -> None:
    acl = AccessControl(
        "c",
        {
            "aws.greengrass.ipc.bogus": {"p": {"operations": ["*"], "resources": ["*"]}},
            PUBSUB: {"p": {"operations": [PUB]}},
        },
    )
    assert not acl.allows(PUBSUB, PUB, "t")


def test_publish_denied_for_topic_not_in_recipe(agent: AgentFactory) -> None:
    pub = agent("com.test.Pub", pubsub_policy(publish=["local/inference"]))
    reply = pub.request("publish", topic="local/result", json={})
    assert reply["error"] == "UnauthorizedError"
    assert reply["message"] == (
        "Principal com.test.Pub is not authorized to perform aws.greengrass.ipc.pubsub:"
        "aws.greengrass#PublishToTopic on resource local/result"
    )
    assert pub.request("publish", topic="local/inference", json={})["ok"]


def test_subscribe_denied_and_publish_grant_does_not_imply_subscribe(agent: AgentFactory) -> None:
    c = agent("com.test.C", pubsub_policy(publish=["local/result"]))
    assert c.request("subscribe", topic="local/result")["error"] == "UnauthorizedError"


def test_wildcard_filter_needs_a_policy_covering_the_filter_itself(agent: AgentFactory) -> None:
    c = agent("com.test.C", pubsub_policy(subscribe=["local/result"]))
    assert c.request("subscribe", topic="local/+")["error"] == "UnauthorizedError"
    assert c.request("subscribe", topic="local/#")["error"] == "UnauthorizedError"


def test_component_without_access_control_is_refused_everything(agent: AgentFactory) -> None:
    c = agent("com.test.Nothing")
    assert c.request("publish", topic="t", json={})["error"] == "UnauthorizedError"
    assert c.request("subscribe", topic="t")["error"] == "UnauthorizedError"
    reply = c.request("publish_iot", topic="t", payload=base64.b64encode(b"x").decode())
    assert (reply["error"], reply["message"]) == ("UnauthorizedError", "Not Authorized")
    reply = c.request("call", method="list_local_deployments", kwargs={})
    assert reply["error"] == "UnauthorizedError"


def test_pubsub_grant_does_not_open_iot_core(agent: AgentFactory) -> None:
    c = agent("com.test.C", pubsub_policy(publish=["*"], subscribe=["*"]))
    reply = c.request("publish_iot", topic="dev/1", payload=base64.b64encode(b"x").decode())
    assert reply["error"] == "UnauthorizedError"
    assert c.request("subscribe_iot", topic="dev/1")["error"] == "UnauthorizedError"


def test_access_control_comes_from_each_component_own_policy(agent: AgentFactory) -> None:
    # B grants itself nothing; A's grant on the same topic must not leak to B.
    agent("com.test.A", pubsub_policy(publish=["shared"]))
    b = agent("com.test.B")
    assert b.request("publish", topic="shared", json={})["error"] == "UnauthorizedError"
