"""Config store operations and configuration deployments, with the real client."""

from __future__ import annotations

import time
from typing import Any

import pytest

from ggvision.core.configstore import ConfigStore
from ggvision.core.services.config import epoch_ms
from ggvision.testing.agent import AgentProcess
from ggvision.testing.harness import CoreThread
from tests.conftest import AgentFactory

CFG = {"model": {"key": "tflite-int8", "threads": 2}, "topK": 5, "accessControl": {}}


def test_get_configuration_whole_leaf_container_and_other_component(agent: AgentFactory) -> None:
    a = agent("com.test.A", configuration=CFG)
    agent("com.test.B", configuration={"x": 1})
    whole = a("call", method="get_configuration", kwargs={})["response"]
    assert whole["componentName"] == "com.test.A"
    assert whole["value"]["model"] == {"key": "tflite-int8", "threads": 2}
    leaf = a("call", method="get_configuration", kwargs={"key_path": ["model", "threads"]})
    assert leaf["response"]["value"] == {"threads": 2}
    box = a("call", method="get_configuration", kwargs={"key_path": ["model"]})
    assert box["response"]["value"] == {"key": "tflite-int8", "threads": 2}
    other = a(
        "call",
        method="get_configuration",
        kwargs={"component_name": "com.test.B", "key_path": ["x"]},
    )
    assert other["response"] == {"componentName": "com.test.B", "value": {"x": 1}}


def test_missing_key_and_unknown_component_are_resource_not_found(agent: AgentFactory) -> None:
    a = agent("com.test.A", configuration=CFG)
    r1 = a.request("call", method="get_configuration", kwargs={"key_path": ["nope"]})
    r2 = a.request("call", method="get_configuration", kwargs={"component_name": "com.none"})
    assert (r1["error"], r1["message"]) == ("ResourceNotFoundError", "Key not found")
    assert r2["error"] == "ResourceNotFoundError"


def test_update_configuration_merges_and_notifies_subscribers(
    agent: AgentFactory, core: CoreThread
) -> None:
    a = agent("com.test.A", configuration=CFG)
    watcher = agent("com.test.W")
    sid = watcher("subscribe_config", component="com.test.A", key_path=["model"])["sub"]
    a(
        "call",
        method="update_configuration",
        kwargs={"key_path": ["model"], "timestamp": time.time(), "value_to_merge": {"threads": 4}},
    )
    events = watcher("events", sub=sid, n=1)["events"]
    assert events == [{"component": "com.test.A", "key_path": ["model", "threads"]}]
    assert core.get_config("com.test.A")["model"] == {"key": "tflite-int8", "threads": 4}


def test_stale_timestamp_is_a_failed_condition_and_changes_nothing(
    agent: AgentFactory, core: CoreThread
) -> None:
    a = agent("com.test.A", configuration=CFG)
    a(
        "call",
        method="update_configuration",
        kwargs={"key_path": ["topK"], "timestamp": time.time(), "value_to_merge": 3},
    )
    reply = a.request(
        "call",
        method="update_configuration",
        kwargs={"key_path": ["topK"], "timestamp": time.time() - 3600, "value_to_merge": 10},
    )
    assert reply["error"] == "FailedUpdateConditionCheckError"
    assert core.get_config("com.test.A")["topK"] == 3


def test_access_control_cannot_be_changed_through_ipc(agent: AgentFactory) -> None:
    a = agent("com.test.A", configuration=CFG)
    reply = a.request(
        "call",
        method="update_configuration",
        kwargs={
            "key_path": ["accessControl"],
            "timestamp": time.time(),
            "value_to_merge": {"aws.greengrass.ipc.pubsub": {}},
        },
    )
    assert reply["error"] == "InvalidArgumentsError"


def test_deployment_rejected_by_validator_leaves_config_unchanged(
    agent: AgentFactory, core: CoreThread
) -> None:
    a = agent("com.test.A", configuration=CFG)
    sid = a("subscribe_validate", status="REJECTED", message="model nope is not in the store")[
        "sub"
    ]
    result = core.deploy({"com.test.A": {"MERGE": {"model": {"key": "nope"}}}})
    assert result.status == "FAILED"
    assert "model nope is not in the store" in result.message
    proposed = a("events", sub=sid, n=1)["events"][0]
    assert proposed["configuration"]["model"]["key"] == "nope"
    assert proposed["deployment_id"] == result.deployment_id
    assert core.get_config("com.test.A")["model"]["key"] == "tflite-int8"


def test_deployment_accepted_applies_merge_and_reset(agent: AgentFactory, core: CoreThread) -> None:
    core.register("com.test.A", CFG, defaults=CFG)
    a = agent("com.test.A", configuration=CFG)
    a("subscribe_validate", status="ACCEPTED")
    sid = a("subscribe_config", key_path=[])["sub"]
    result = core.deploy({"com.test.A": {"MERGE": {"model": {"key": "onnx-int8"}, "topK": 1}}})
    assert result.status == "SUCCEEDED"
    cfg = core.get_config("com.test.A")
    assert cfg["model"] == {"key": "onnx-int8", "threads": 2}
    changed = sorted(tuple(e["key_path"]) for e in a("events", sub=sid, n=2)["events"])
    assert changed == [("model", "key"), ("topK",)]
    reset = core.deploy({"com.test.A": {"RESET": ["/topK"]}})
    assert reset.status == "SUCCEEDED"
    assert core.get_config("com.test.A")["topK"] == 5


def test_validity_report_without_a_pending_deployment_is_invalid(agent: AgentFactory) -> None:
    a = agent("com.test.A", configuration=CFG)
    reply = a.request(
        "call",
        method="send_configuration_validity_report",
        kwargs={"configuration_validity_report": None},
    )
    assert not reply["ok"]


def test_deployment_to_unknown_component_fails(core: CoreThread) -> None:
    result = core.deploy({"com.none": {"MERGE": {"a": 1}}})
    assert result.status == "FAILED"
    assert "com.none" in result.message


# --- UpdateConfiguration and modification times, case by case with the Nucleus's
# src/test/java/com/aws/greengrass/builtin/services/configstore/ConfigStoreIPCEventStreamAgentTest.java  # noqa: E501
# (its setup: component A holds temperature=20 and humidity=15). Timestamps travel as epoch
# seconds; the Nucleus compares them in whole milliseconds.
NUCLEUS_CFG = {"temperature": 20, "humidity": 15}
STALE = "Proposed timestamp is older than the config's latest modified timestamp"


def _update(
    a: AgentProcess, value: dict[str, Any], ts: float, key_path: list[str] | None = None
) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"timestamp": ts, "value_to_merge": value}
    if key_path is not None:
        kwargs["key_path"] = key_path
    return a.request("call", method="update_configuration", kwargs=kwargs)


def _soon() -> float:
    """Whole seconds ahead of every stamp the registration gave (those are "now")."""
    return float(int(time.time()) + 10)


# GIVEN_agent_running_WHEN_update_config_request_THEN_update_config_value
def test_nucleus_update_at_root_merges_the_leaf(agent: AgentFactory, core: CoreThread) -> None:
    a = agent("com.test.A", configuration=NUCLEUS_CFG)
    assert _update(a, {"humidity": 30}, time.time(), key_path=[])["ok"]
    assert core.get_config("com.test.A") == {"temperature": 20, "humidity": 30}


# GIVEN_agent_running_WHEN_update_config_request_for_ACL_THEN_update_fails
def test_nucleus_access_control_at_root_is_refused(agent: AgentFactory, core: CoreThread) -> None:
    a = agent("com.test.A", configuration=NUCLEUS_CFG)
    value = {"accessControl": {"aws.greengrass.ipc.pubsub": "policy"}}
    reply = _update(a, value, time.time(), key_path=[])
    assert reply["error"] == "InvalidArgumentsError"
    assert "Config update is not allowed for following fields" in reply["message"]
    assert "accessControl" not in core.get_config("com.test.A")


# GIVEN_agent_running_WHEN_update_config_request_for_ACL_nested_node_THEN_update_fails
def test_nucleus_access_control_nested_is_refused(agent: AgentFactory) -> None:
    a = agent("com.test.A", configuration=NUCLEUS_CFG)
    reply = _update(a, {"aws.greengrass.ipc.pubsub": "policy"}, time.time(), ["accessControl"])
    assert reply["error"] == "InvalidArgumentsError"
    assert "Config update is not allowed for following fields" in reply["message"]


# GIVEN_update_config_request_WHEN_update_key_does_not_exist_THEN_create_key
def test_nucleus_update_without_key_path_creates_the_key(
    agent: AgentFactory, core: CoreThread
) -> None:
    a = agent("com.test.A", configuration=NUCLEUS_CFG)
    assert _update(a, {"NewKey": "SomeValue"}, time.time())["ok"]
    assert core.get_config("com.test.A")["NewKey"] == "SomeValue"


# GIVEN_update_config_request_WHEN_proposed_timestamp_is_stale_THEN_fail
def test_nucleus_stale_timestamp_fails_with_the_modeled_error(
    agent: AgentFactory, core: CoreThread
) -> None:
    a = agent("com.test.A", configuration=NUCLEUS_CFG)
    t = _soon()
    assert _update(a, {"temperature": 20}, t, key_path=[])["ok"]  # its modtime is now t
    reply = _update(a, {"temperature": 30}, t - 0.010, key_path=[])
    # The awsiotsdk client raised its own modeled class (the agent reports the class name).
    assert (reply["error"], reply["message"]) == ("FailedUpdateConditionCheckError", STALE)
    assert core.get_config("com.test.A")["temperature"] == 20


# GIVEN_update_config_request_WHEN_requested_node_does_not_exist_THEN_update_is_successful,
# and the Nucleus agent's rule beside it: a node this call creates is stamped now, so even an
# old timestamp is not stale there.
@pytest.mark.parametrize("ts", [time.time(), 1.0])
def test_nucleus_update_of_a_missing_container_creates_it(
    agent: AgentFactory, core: CoreThread, ts: float
) -> None:
    a = agent("com.test.A", configuration=NUCLEUS_CFG)
    assert _update(a, {"SomeLeafKey": "SomeOtherValue"}, ts, ["SomeContainerKey"])["ok"]
    assert core.get_config("com.test.A")["SomeContainerKey"] == {"SomeLeafKey": "SomeOtherValue"}


# GIVEN_update_config_request_WHEN_requested_node_is_container_THEN_update_is_successful
def test_nucleus_update_of_an_existing_container(agent: AgentFactory, core: CoreThread) -> None:
    cfg = {**NUCLEUS_CFG, "SomeContainerKey": {"SomeLeafKey": "SomeValue"}}
    a = agent("com.test.A", configuration=cfg)
    assert _update(a, {"SomeLeafKey": "SomeOtherValue"}, time.time(), ["SomeContainerKey"])["ok"]
    assert core.get_config("com.test.A")["SomeContainerKey"] == {"SomeLeafKey": "SomeOtherValue"}


# GIVEN_update_config_request_WHEN_requested_node_is_leaf_THEN_update_to_convert_to_container_is_successful  # noqa: E501
def test_nucleus_leaf_becomes_a_container(agent: AgentFactory, core: CoreThread) -> None:
    cfg = {**NUCLEUS_CFG, "SomeContainerKey": {"SomeLeafKey": "SomeValue"}}
    a = agent("com.test.A", configuration=cfg)
    value = {"SomeLeafKey": {"newKey": "SomeOtherValue"}}
    assert _update(a, value, time.time(), ["SomeContainerKey"])["ok"]
    assert core.get_config("com.test.A")["SomeContainerKey"] == value


# GIVEN_update_config_request_WHEN_requested_node_is_container_THEN_update_to_convert_to_leaf_is_successful  # noqa: E501
def test_nucleus_container_becomes_a_leaf(agent: AgentFactory, core: CoreThread) -> None:
    cfg = {**NUCLEUS_CFG, "SomeContainerKey": {"SomeLeafKey": "SomeValue"}}
    a = agent("com.test.A", configuration=cfg)
    assert _update(a, {"SomeContainerKey": "SomeOtherValue"}, time.time())["ok"]
    assert core.get_config("com.test.A")["SomeContainerKey"] == "SomeOtherValue"


# GIVEN_subscribe_to_config_update_request_WHEN_timestamp_changes_but_not_value_THEN_no_event_triggered  # noqa: E501
def test_nucleus_same_value_newer_timestamp_moves_the_modtime_without_an_event(
    agent: AgentFactory,
) -> None:
    a = agent("com.test.A", configuration=NUCLEUS_CFG)
    watcher = agent("com.test.B")
    sid = watcher("subscribe_config", component="com.test.A", key_path=["temperature"])["sub"]
    t = _soon()
    assert _update(a, {"temperature": 20}, t, key_path=[])["ok"]
    assert watcher("events", sub=sid, n=1, timeout=0.5)["events"] == []
    # The modtime did move to t: a write between the registration and t is now stale.
    assert _update(a, {"temperature": 21}, t - 1, key_path=[])["error"] == (
        "FailedUpdateConditionCheckError"
    )
    assert _update(a, {"temperature": 22}, t + 1, key_path=[])["ok"]  # the subscription works
    events = watcher("events", sub=sid, n=1)["events"]
    assert events == [{"component": "com.test.A", "key_path": ["temperature"]}]


# From the Nucleus agent's handleRequest: it merges first, then compares the request's time with
# the modtime of the node at keyPath, and a container's is its newest child's. So a fresh leaf is
# written, and the call still fails when a sibling under that container is newer.
def test_container_newer_than_the_request_fails_after_the_merge(
    agent: AgentFactory, core: CoreThread
) -> None:
    a = agent("com.test.A", configuration=NUCLEUS_CFG)
    t = _soon()
    assert _update(a, {"humidity": 15}, t, key_path=[])["ok"]
    assert _update(a, {"temperature": 20}, t + 2, key_path=[])["ok"]
    reply = _update(a, {"humidity": 30}, t + 1, key_path=[])
    assert (reply["error"], reply["message"]) == ("FailedUpdateConditionCheckError", STALE)
    assert core.get_config("com.test.A") == {"temperature": 20, "humidity": 30}


def test_timestamps_compare_in_whole_milliseconds(agent: AgentFactory, core: CoreThread) -> None:
    a = agent("com.test.A", configuration=NUCLEUS_CFG)
    t = _soon()
    assert _update(a, {"humidity": 1}, t + 0.1238, key_path=[])["ok"]
    assert _update(a, {"humidity": 2}, t + 0.1235, key_path=[])["ok"]  # the same millisecond
    assert core.get_config("com.test.A")["humidity"] == 2
    assert _update(a, {"humidity": 3}, t + 0.1229, key_path=[])["error"] == (
        "FailedUpdateConditionCheckError"
    )
    assert core.get_config("com.test.A")["humidity"] == 2


@pytest.mark.parametrize(
    ("seconds", "ms"),
    [(1.0, 1000), (1700000000.1238, 1700000000123), (0.0009, 0), (-0.0005, -1)],
)
def test_epoch_ms_reads_the_wire_timestamp_as_the_nucleus_does(seconds: float, ms: int) -> None:
    assert epoch_ms(seconds) == ms


def test_configstore_modtime_rule() -> None:
    store = ConfigStore()
    assert store.merge("c", [], {"box": {"a": 1, "b": 2}, "top": 0}, 1_000)
    assert store.merge("c", ["box"], {"a": 5}, 3_000) == [("box", "a")]
    assert store.merge("c", ["box"], {"b": 7}, 2_000) == [("box", "b")]
    assert store.modtime("c", ["box", "a"]) == 3_000  # a leaf: its own stamp
    assert store.modtime("c", ["box"]) == 3_000  # a container: its newest leaf's
    assert (store.modtime("c", []), store.modtime("c", ["top"])) == (3_000, 1_000)
    assert store.merge("c", ["box"], {"a": 9}, 2_999) == []  # stale: left alone
    assert store.get("c", ["box", "a"]) == 5
    assert store.merge("c", ["box"], {"a": 9}, 3_000) == [("box", "a")]  # equal: applies
    assert store.merge("c", ["box"], {"b": 7}, 4_000) == []  # same value: no change...
    assert store.modtime("c", ["box"]) == 4_000  # ...but the stamp moves forward
    assert store.modtime("c", ["nope"]) is None
    before = time.time_ns() // 1_000_000
    store.set_component("d", {"x": {"y": 1}})  # registration stamps every leaf now
    stamp = store.modtime("d", ["x"])
    assert stamp is not None and before <= stamp <= time.time_ns() // 1_000_000


# Issue #17, item 4. ConfigStoreIPCEventStreamAgent.UpdateConfigurationOperationHandler: a keyPath
# naming a leaf (node instanceof Topic) merges {name: value} into its parent, and
# Topics.updateChild replaces the leaf with a container stamped with the request's time (the
# same rule as GIVEN_update_config_request_WHEN_requested_node_is_leaf_THEN_update_to_convert_to_
# container_is_successful, one level up). It used to be an InvalidArgumentsError here.
def test_nucleus_a_map_merged_at_a_leaf_replaces_it(agent: AgentFactory, core: CoreThread) -> None:
    a = agent("com.test.A", configuration=NUCLEUS_CFG)
    assert _update(a, {"unit": "C"}, time.time(), ["temperature"])["ok"]
    assert core.get_config("com.test.A")["temperature"] == {"unit": "C"}


# Topics.updateChild removes an existing leaf (or container) of the other kind whatever its
# modtime: the conversion is not a stale write, and the new node has the request's time.
def test_nucleus_a_conversion_ignores_the_older_nodes_stamp(
    agent: AgentFactory, core: CoreThread
) -> None:
    a = agent("com.test.A", configuration=NUCLEUS_CFG)
    t = _soon()
    assert _update(a, {"temperature": 25}, t + 5, key_path=[])["ok"]  # stamped t + 5
    assert _update(a, {"temperature": {"unit": "C"}}, t, key_path=[])["ok"]
    assert core.get_config("com.test.A")["temperature"] == {"unit": "C"}


# Topics keeps its own modtime (made "now", Topics.java's constructor) and an empty one keeps it:
# the UpdateConfiguration handler's check (updateTime < updatedNode.getModtime(), the test
# GIVEN_update_config_request_WHEN_proposed_timestamp_is_stale_THEN_fail) refuses an update of
# an empty container older than the container. It used to pass here (no leaf, no modtime).
def test_nucleus_an_empty_containers_modtime_is_when_it_was_made(
    agent: AgentFactory, core: CoreThread
) -> None:
    a = agent("com.test.A", configuration={**NUCLEUS_CFG, "options": {}})
    reply = _update(a, {}, time.time() - 3600, ["options"])
    assert (reply["error"], reply["message"]) == ("FailedUpdateConditionCheckError", STALE)
    assert _update(a, {}, _soon(), ["options"])["ok"]
    # Filled, its modtime is its newest child's again (Topics.childChanged).
    assert _update(a, {"x": 1}, time.time() - 3600, ["options"])["ok"]
    assert core.get_config("com.test.A")["options"] == {"x": 1}
