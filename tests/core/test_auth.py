"""Authorization from recipe accessControl: the matchers, and the denial paths (real client)."""

from __future__ import annotations

import base64
import logging

import pytest

from ggvision.core.auth import MQTTPROXY, PUBSUB, AccessControl, resource_error
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


# --- resources the Nucleus refuses (AuthorizationModule.validateResource): dropped, others kept ---
_QMARK = (
    "Resource contains invalid character: '?'. Use an escape sequence: ${?}. "
    "The '?' character isn't supported as a wildcard"
)
_BAD_ESCAPE = "Resource contains an invalid escape sequence. You can use ${*}, ${$}, or ${?}"


def _bad_char(c: str) -> str:
    return f"Resource contains an invalid escape sequence: ${{{c}}}. " + _BAD_ESCAPE.split(". ")[1]


@pytest.mark.parametrize(
    ("resource", "reason"),
    [
        # AuthorizationModuleTest.invalidResources1 -> Given_authZmodule_WHEN_added_resources_
        #   with_unescaped_questionmark_characterTHEN_parseResource_fails
        ("res${?}res?entry", _QMARK),
        ("res?entry", _QMARK),
        ("res${*}?", _QMARK),
        ("?res${*}", _QMARK),
        ("res${$}{?}", _QMARK),
        # AuthorizationModuleTest.invalidResources2 -> Given_authZmodule_WHEN_added_resources_
        #   with_invalid_escape_sequence_THEN_parseResource_fails
        ("res${?}abc${123}", _BAD_ESCAPE),
        ("res${*}abc${}", _BAD_ESCAPE),
        ("res${*}abc${$*}", _BAD_ESCAPE),
        ("res${xyz", _BAD_ESCAPE),
        ("res${asd${*}abc", _BAD_ESCAPE),
        # AuthorizationModuleTest.invalidResources3 -> Given_authZmodule_WHEN_added_resources_
        #   with_invalid_escaped_chars_THEN_parseResource_fails
        ("res${?}abc${x}", _bad_char("x")),
        ("res${*}abc${/}", _bad_char("/")),
        ("abc${.}res${$}", _bad_char(".")),
        # WildcardTrieTest.testEscapedCharactersMatching, rt4 ("invalid escaping sequence": the trie
        # would match these literally, but validateResource rejects them before add)
        ("abc${", _BAD_ESCAPE),
        ("qwe${ca}", _BAD_ESCAPE),
        # AuthorizationModuleTest.invalidPermEntries (resource "" and " ": Utils.isEmpty)
        ("", "Resource cannot be empty"),
        (" ", "Resource cannot be empty"),
    ],
)
@pytest.mark.parametrize("destination", [PUBSUB, MQTTPROXY])
def test_invalid_resource_is_dropped_and_grants_not_even_its_literal_spelling(
    resource: str, reason: str, destination: str, caplog: pytest.LogCaptureFixture
) -> None:
    assert resource_error(resource) == reason
    op = PUB if destination == PUBSUB else IOT_PUB
    with caplog.at_level(logging.WARNING, logger="ggvision.core.auth"):
        acl = _acl(destination, [resource, "ok"], [op])
    assert not acl.allows(destination, op, resource)  # the literal spelling is refused
    assert acl.allows(destination, op, "ok")  # the policy's valid resource stays
    dropped = [r for r in caplog.records if getattr(r, "event", None) == "auth.resource_dropped"]
    assert [(r.resource, r.reason) for r in dropped] == [(resource, reason)]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("resource", "topic"),
    # AuthorizationModuleTest.validResources ->
    # Given_authZmodule_WHEN_added_valid_resources_THEN_validateResource_works (kept, and granting)
    [
        ("res${*}${?}${$}", "res*?$"),
        ("res*${?}${*}${$}$", "res/any/level?*$$"),
        ("res*$${*}${$}", "resX$*$"),
        ("${?}${*}$$}${$}", "?*$$}$"),
        ("abc$", "abc$"),
        ("*", "any/thing"),
    ],
)
def test_valid_escapes_and_lone_dollars_are_kept(resource: str, topic: str) -> None:
    assert resource_error(resource) is None
    assert _acl(PUBSUB, [resource], [PUB]).allows(PUBSUB, PUB, topic)


@pytest.mark.parametrize(
    ("resources", "topic", "allowed"),
    [
        # WildcardTrieTest.testEscapedCharactersMatching (rt: escaped wildcards are literal)
        (["acv/rt${*}mk", "${$}/begin", "end/${?}"], "acv/rt*mk", True),
        (["acv/rt${*}mk", "${$}/begin", "end/${?}"], "acv/rt${*}mk", False),
        (["acv/rt${*}mk", "${$}/begin", "end/${?}"], "acv/rt123mk", False),
        (["acv/rt${*}mk", "${$}/begin", "end/${?}"], "$/begin", True),
        (["acv/rt${*}mk", "${$}/begin", "end/${?}"], "${$}/begin", False),
        (["acv/rt${*}mk", "${$}/begin", "end/${?}"], "end/?", True),
        (["acv/rt${*}mk", "${$}/begin", "end/${?}"], "end/${?}", False),
        # rt2: an escaped '$' escapes nothing after it
        (["acv/rt${$}{*}mk"], "acv/rt${abc/123/=-_+}mk", True),
        (["acv/rt${$}{*}mk"], "rt${$}{*}mk", False),
        # rt3: '${*}' is the literal '*' only
        (["${*}"], "*", True),
        (["${*}"], "*ab", False),
        (["${*}"], "12/3", False),
        (["${*}"], "abc/def/g", False),
        # rt4: a lone '$' is literal; the invalid escapes of rt4 are dropped (cases above)
        (["123$", "456$*"], "123$", True),
        (["123$", "456$*"], "456$123/abc", True),
        (["123$", "456$*"], "456*", False),
    ],
)
@pytest.mark.parametrize("destination", [PUBSUB, MQTTPROXY])
def test_escaped_characters_matching(
    resources: list[str], topic: str, allowed: bool, destination: str
) -> None:
    op = PUB if destination == PUBSUB else IOT_PUB
    assert _acl(destination, resources, [op]).allows(destination, op, topic) is allowed


def test_policy_with_partially_invalid_resources_keeps_the_valid_ones(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # AuthorizationHandlerTest.GIVEN_authZ_handler_WHEN_loaded_incorrect_config_THEN_load_fails
    # (getAuthZPolicyWithPartialInvalidResources: two drop logs; "valid${?}res", "valid*res" kept)
    resources = ["invalid?res", "valid${?}res", "invalid${*res", "valid*res"]
    with caplog.at_level(logging.WARNING, logger="ggvision.core.auth"):
        acl = _acl(PUBSUB, resources, [PUB])
        for topic in ("valid?res", "validXYres", "invalid?res", "invalid${*res", "invalidXres"):
            acl.allows(PUBSUB, PUB, topic)  # matching logs nothing: the warning is per load
    dropped = [r for r in caplog.records if getattr(r, "event", None) == "auth.resource_dropped"]
    assert sorted(r.resource for r in dropped) == ["invalid${*res", "invalid?res"]  # type: ignore[attr-defined]
    assert acl.allows(PUBSUB, PUB, "valid?res")
    assert acl.allows(PUBSUB, PUB, "validXYres")
    assert not acl.allows(PUBSUB, PUB, "invalid?res")
    assert not acl.allows(PUBSUB, PUB, "invalid${*res")
    # 'invalid${*res' is dropped whole: its '*' does not become a wildcard either.
    assert not acl.allows(PUBSUB, PUB, "invalid${Xres")


def test_policy_whose_resources_are_all_invalid_grants_not_even_a_null_resource() -> None:
    # AuthorizationModule.addPermission validates before it registers the operation, so a policy
    # with only refused resources leaves no permission (isPresent(null) is false); a policy that
    # lists no resources at all registers a null resource (AuthorizationHandler.addPermission).
    assert not _acl(PUBSUB, ["a?", "b${c}"], [PUB]).allows(PUBSUB, PUB, None)
    assert _acl(PUBSUB, [], [PUB]).allows(PUBSUB, PUB, None)


def test_invalid_escape_resource_dropped_for_a_real_client(
    agent: AgentFactory, caplog: pytest.LogCaptureFixture
) -> None:
    # The partial-invalid policy of AuthorizationHandlerTest, through awsiotsdk against the core.
    with caplog.at_level(logging.WARNING, logger="ggvision.core.auth"):
        c = agent(
            "com.test.Esc",
            pubsub_policy(publish=["local/${x}", "local/ok"], subscribe=["lit/${*}"]),
        )
        assert c.request("publish", topic="local/ok", json={})["ok"]
    reply = c.request("publish", topic="local/${x}", json={})
    assert reply["error"] == "UnauthorizedError"
    assert reply["message"].endswith("PublishToTopic on resource local/${x}")
    # A valid escape stays: '${*}' grants the literal '*' filter only, not a wildcard.
    assert c.request("subscribe", topic="lit/*")["ok"]
    assert c.request("subscribe", topic="lit/x")["error"] == "UnauthorizedError"
    dropped = [r for r in caplog.records if getattr(r, "event", None) == "auth.resource_dropped"]
    assert [(r.component, r.resource) for r in dropped] == [("com.test.Esc", "local/${x}")]  # type: ignore[attr-defined]


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
