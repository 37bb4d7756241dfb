"""PublishToIoTCore / SubscribeToIoTCore through the core's bridge to a real mosquitto broker."""

from __future__ import annotations

import base64
import queue
import time
from collections.abc import Iterator
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from ggvision.core.mqtt import MqttBridge, parse_broker
from ggvision.testing.agent import AgentProcess
from ggvision.testing.harness import CoreThread
from tests.conftest import AgentFactory, Mosquitto

IOT_POLICY = {
    "aws.greengrass.ipc.mqttproxy": {
        "iot:1": {
            "operations": ["aws.greengrass#PublishToIoTCore", "aws.greengrass#SubscribeToIoTCore"],
            "resources": ["ggvision/+/results", "ggvision/cmd/#"],
        }
    }
}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class CloudClient:
    """A plain MQTT client standing where AWS IoT Core's other side would be."""

    def __init__(self, broker: Mosquitto) -> None:
        self.messages: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.client = mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id="cloud-side"
        )
        self.client.on_message = lambda c, u, m: self.messages.put((m.topic, bytes(m.payload)))
        host, port = parse_broker(broker.address)
        self.client.connect(host, port)
        self.client.loop_start()

    def subscribe(self, topic: str) -> None:
        result, _mid = self.client.subscribe(topic, qos=1)
        assert result == 0
        time.sleep(0.2)

    def publish(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(5)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def bridged(mosquitto: Mosquitto) -> Iterator[tuple[CoreThread, Mosquitto]]:
    host, port = parse_broker(mosquitto.address)
    with CoreThread(iot=MqttBridge(host, port, ack_timeout_s=3.0)) as c:
        yield c, mosquitto


@pytest.fixture
def cloud(mosquitto: Mosquitto) -> Iterator[CloudClient]:
    c = CloudClient(mosquitto)
    yield c
    c.close()


def _agent(core: CoreThread, name: str, acl: dict[str, Any]) -> AgentProcess:
    return AgentProcess(core.component_env(name, acl))


def test_without_a_broker_iot_core_calls_get_service_error(agent: AgentFactory) -> None:
    a = agent("com.test.A", IOT_POLICY)
    reply = a.request("publish_iot", topic="ggvision/cam/results", payload=b64(b"{}"))
    assert reply["error"] == "ServiceError"
    assert "no MQTT broker" in reply["message"]
    assert a.request("subscribe_iot", topic="ggvision/cmd/#")["error"] == "ServiceError"


def test_publish_to_iot_core_reaches_the_broker(
    bridged: tuple[CoreThread, Mosquitto], cloud: CloudClient
) -> None:
    core, _ = bridged
    cloud.subscribe("ggvision/#")
    with _agent(core, "com.test.Uplink", IOT_POLICY) as a:
        for i in range(5):
            a("publish_iot", topic="ggvision/cam1/results", payload=b64(f'{{"n": {i}}}'.encode()))
        got = [cloud.messages.get(timeout=5) for _ in range(5)]
    assert got == [("ggvision/cam1/results", f'{{"n": {i}}}'.encode()) for i in range(5)]


def test_subscribe_to_iot_core_receives_cloud_messages(
    bridged: tuple[CoreThread, Mosquitto], cloud: CloudClient
) -> None:
    core, _ = bridged
    with _agent(core, "com.test.Cmd", IOT_POLICY) as a:
        sid = a("subscribe_iot", topic="ggvision/cmd/#")["sub"]
        cloud.publish("ggvision/cmd/switch", b'{"model": "onnx-int8"}')
        cloud.publish("ggvision/other", b"not for us")
        events = a("events", sub=sid, n=1, timeout=5)["events"]
        more = a("events", sub=sid, n=1, timeout=0.5)["events"]
    assert events == [{"topic": "ggvision/cmd/switch", "payload": b64(b'{"model": "onnx-int8"}')}]
    assert more == []


def test_broker_down_gives_service_error_and_the_link_recovers(
    bridged: tuple[CoreThread, Mosquitto],
) -> None:
    core, broker = bridged
    with _agent(core, "com.test.Uplink", IOT_POLICY) as a:
        a("publish_iot", topic="ggvision/cam1/results", payload=b64(b"before"))
        broker.stop()
        time.sleep(0.5)
        reply = a.request("publish_iot", topic="ggvision/cam1/results", payload=b64(b"during"))
        assert reply["error"] == "ServiceError"
        # MqttProxyIPCAgent.PublishToIoTCoreOperationHandler's message (issue #17, item 4)
        assert reply["message"].startswith("Publish to topic ggvision/cam1/results failed: ")
        broker.start()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            reply = a.request("publish_iot", topic="ggvision/cam1/results", payload=b64(b"after"))
            if reply["ok"]:
                break
            time.sleep(0.3)
        assert reply["ok"], reply


def test_iot_core_arguments_are_validated(agent: AgentFactory) -> None:
    a = agent("com.test.A", IOT_POLICY)
    bad_qos = a.request("publish_iot", topic="ggvision/cam/results", qos="2", payload=b64(b"x"))
    assert (bad_qos["error"], bad_qos["message"]) == (
        "InvalidArgumentsError",
        "Invalid QoS value: 2",
    )


# Issue #17, item 4: MqttProxyIPCAgent.doAuthorization turns the AuthorizationException of a
# blank topic (AuthorizationModule.isPresent: "Resource cannot be empty") into its constant
# UnauthorizedError("Not Authorized"), before it needs a broker.
def test_a_blank_iot_core_topic_is_not_authorized(agent: AgentFactory) -> None:
    acl = {
        "aws.greengrass.ipc.mqttproxy": {
            "p": {"operations": ["aws.greengrass#PublishToIoTCore"], "resources": ["*"]}
        }
    }
    a = agent("com.test.Blank", acl)
    reply = a.request("publish_iot", topic=" ", payload=b64(b"{}"))
    assert (reply["error"], reply["message"]) == ("UnauthorizedError", "Not Authorized")
