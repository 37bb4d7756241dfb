"""Local pub/sub between real clients in separate processes."""

from __future__ import annotations

import base64
import time

import pytest

from ggvision.core.services.pubsub import split_topic, topic_matches
from ggvision.testing.harness import CoreThread, pubsub_policy
from tests.conftest import AgentFactory


def test_binary_and_json_messages_reach_another_component(agent: AgentFactory) -> None:
    sub = agent("com.test.Sub", pubsub_policy(subscribe=["local/result"]))
    pub = agent("com.test.Pub", pubsub_policy(publish=["local/result"]))
    sid = sub("subscribe", topic="local/result")["sub"]
    pub("publish", topic="local/result", binary=base64.b64encode(b"\x00\x01hello").decode())
    pub("publish", topic="local/result", json={"id": "r1", "labels": ["tabby"]})
    events = sub("events", sub=sid, n=2)["events"]
    assert {
        "topic": "local/result",
        "binary": base64.b64encode(b"\x00\x01hello").decode(),
    } in events
    assert {"topic": "local/result", "json": {"id": "r1", "labels": ["tabby"]}} in events
    assert len(events) == 2


@pytest.mark.parametrize(
    ("filter_", "topic", "delivered"),
    [
        ("local/+/result", "local/cam1/result", True),
        ("local/+/result", "local/cam1/x/result", False),
        ("local/#", "local/a/b/c", True),
        ("local/#", "local", False),  # the Nucleus's '#' needs at least one level
        ("#", "anything/at/all", True),
    ],
)
def test_wildcard_filters_follow_the_nucleus(
    agent: AgentFactory, filter_: str, topic: str, delivered: bool
) -> None:
    sub = agent("com.test.Sub", pubsub_policy(subscribe=["*"]))
    pub = agent("com.test.Pub", pubsub_policy(publish=["*"]))
    sid = sub("subscribe", topic=filter_)["sub"]
    pub("publish", topic=topic, json={"n": 1})
    pub("publish", topic="sentinel/done", json={"n": 2})
    marker = sub("subscribe", topic="sentinel/done")["sub"]
    pub("publish", topic="sentinel/done", json={"n": 3})
    sub("events", sub=marker, n=1)  # every earlier event has been written by now
    events = sub("events", sub=sid, n=1, timeout=0.2)["events"]
    got = [e for e in events if e["topic"] == topic]
    assert bool(got) is delivered
    if delivered:
        assert got[0]["json"] == {"n": 1}


def test_event_context_carries_published_topic_not_filter(agent: AgentFactory) -> None:
    sub = agent("com.test.Sub", pubsub_policy(subscribe=["local/*"]))
    pub = agent("com.test.Pub", pubsub_policy(publish=["local/*"]))
    sid = sub("subscribe", topic="local/+")["sub"]
    pub("publish", topic="local/cam7", json={})
    assert sub("events", sub=sid, n=1)["events"][0]["topic"] == "local/cam7"


def test_receive_mode_from_others_skips_own_messages(agent: AgentFactory) -> None:
    me = agent("com.test.Self", pubsub_policy(publish=["t/*"], subscribe=["t/*"]))
    other = agent("com.test.Other", pubsub_policy(publish=["t/*"]))
    own = me("subscribe", topic="t/x", receive_mode="RECEIVE_MESSAGES_FROM_OTHERS")["sub"]
    everything = me("subscribe", topic="t/x", receive_mode="RECEIVE_ALL_MESSAGES")["sub"]
    me("publish", topic="t/x", json={"from": "me"})
    other("publish", topic="t/x", json={"from": "other"})
    all_events = me("events", sub=everything, n=2)["events"]
    assert sorted(e["json"]["from"] for e in all_events) == ["me", "other"]
    others_only = me("events", sub=own, n=2, timeout=0.3)["events"]
    assert [e["json"]["from"] for e in others_only] == ["other"]


def test_closed_subscription_gets_no_more_events(agent: AgentFactory, core: CoreThread) -> None:
    sub = agent("com.test.Sub", pubsub_policy(subscribe=["a"]))
    pub = agent("com.test.Pub", pubsub_policy(publish=["a"]))
    sid = sub("subscribe", topic="a")["sub"]
    pub("publish", topic="a", json={"n": 1})
    assert len(sub("events", sub=sid, n=1)["events"]) == 1
    sub("close", sub=sid)
    # The core drops the subscription when the client's TERMINATE arrives.
    for _ in range(50):
        if core.call(lambda: core.ipc.pubsub.subscriptions()) == 0:
            break
        time.sleep(0.02)
    assert core.call(lambda: core.ipc.pubsub.subscriptions()) == 0


def test_subscriptions_are_dropped_when_the_client_disconnects(
    agent: AgentFactory, core: CoreThread
) -> None:
    sub = agent("com.test.Sub", pubsub_policy(subscribe=["a", "b/+"]))
    sub("subscribe", topic="a")
    sub("subscribe", topic="b/+")
    assert core.call(lambda: core.ipc.pubsub.subscriptions()) == 2
    sub.close()
    deadline = time.monotonic() + 5
    while core.call(lambda: core.ipc.pubsub.subscriptions()) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert core.call(lambda: core.ipc.pubsub.subscriptions()) == 0


@pytest.mark.parametrize("topic", ["local/+", "local/#", "a*b"])
def test_publishing_to_a_wildcard_is_invalid(agent: AgentFactory, topic: str) -> None:
    pub = agent("com.test.Pub", pubsub_policy(publish=["*"]))
    reply = pub.request("publish", topic=topic, json={})
    assert reply["error"] == "InvalidArgumentsError"
    assert "wildcard" in reply["message"]


def test_empty_subscribe_topic_is_unauthorized_like_the_nucleus(agent: AgentFactory) -> None:
    sub = agent("com.test.Sub", pubsub_policy(subscribe=["*"]))
    assert sub.request("subscribe", topic="")["error"] == "UnauthorizedError"


@pytest.mark.parametrize(
    ("filter_", "topic", "expected"),
    [
        ("a/b", "a/b/", True),  # Java split: trailing empty levels dropped
        ("a/+/c", "a//c", True),
        ("a/#", "a", False),
        ("a/#", "a/b", True),
        ("#", "a", True),
        ("a/#/c", "a/b/c", True),  # a middle '#' behaves like '+'
        ("+", "a/b", False),
    ],
)
def test_topic_matcher_table(filter_: str, topic: str, expected: bool) -> None:
    assert topic_matches(split_topic(filter_), split_topic(topic)) is expected


# Issue #17, item 4: a blank topic. AuthorizationModule.isPresent refuses a request resource that
# Utils.isEmpty calls empty (only Unicode space separators) with "Resource cannot be empty", and
# PubSubIPCEventStreamAgent turns that AuthorizationException into UnauthorizedError(message),
# before its own "must not be empty" check (AuthorizationModuleTest.invalidPermEntries holds the
# same rule for policy resources). A "*" policy used to grant " " here.
@pytest.mark.parametrize("topic", ["", " ", "\u00a0 \u2003"])
def test_a_blank_topic_is_unauthorized_with_the_nucleus_message(
    agent: AgentFactory, topic: str
) -> None:
    a = agent("com.test.Blank", pubsub_policy(publish=["*"], subscribe=["*"]))
    for op in ("subscribe", "publish"):
        reply = (
            a.request(op, topic=topic, json={}) if op == "publish" else a.request(op, topic=topic)
        )
        assert (reply["error"], reply["message"]) == (
            "UnauthorizedError",
            "Resource cannot be empty",
        )
    # Tabs are not space separators for Java's Character.isSpaceChar: "\t" is a topic.
    assert a.request("subscribe", topic="\t")["ok"]
