"""Config store operations and configuration deployments, with the real client."""

from __future__ import annotations

import time

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
