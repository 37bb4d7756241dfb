"""IoT Core operations (``aws.greengrass.ipc.mqttproxy``), bridged to an MQTT broker.

With no broker configured every call gets a modeled ``ServiceError``, the way a Nucleus without a
cloud connection fails them.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from ggvision.core.auth import MQTTPROXY
from ggvision.core.mqtt import IotBridge
from ggvision.core.services import (
    Authorizer,
    Call,
    Operation,
    Streaming,
    check_blob,
    is_blank,
    str_field,
)
from ggvision.errors import GgvisionError, IpcError

PUBLISH = "aws.greengrass#PublishToIoTCore"
SUBSCRIBE = "aws.greengrass#SubscribeToIoTCore"
EVENT_MODEL = "aws.greengrass#IoTCoreMessage"
NO_BROKER = "IoT Core is not reachable: no MQTT broker is configured for this core"


def _qos(call: Call) -> int:
    qos = call.request.get("qos")
    if qos is None:
        raise IpcError("InvalidArgumentsError", "QoS is required")
    if qos not in ("0", "1"):
        raise IpcError("InvalidArgumentsError", f"Invalid QoS value: {qos}")
    return int(qos)


class MqttProxyAgent:
    """PublishToIoTCore and SubscribeToIoTCore over ``bridge``, authorized under
    ``aws.greengrass.ipc.mqttproxy`` (MQTT wildcard matching)."""

    def __init__(self, auth: Authorizer, bridge: IotBridge | None) -> None:
        self.auth = auth
        self.bridge = bridge

    def operations(self) -> list[Operation]:
        return [
            Operation(PUBLISH, self.publish_to_iot_core),
            Operation(
                SUBSCRIBE, self.subscribe_to_iot_core, streaming=True, event_model=EVENT_MODEL
            ),
        ]

    def _authorize(self, call: Call, operation: str, topic: str | None) -> str:
        if topic is None:
            raise IpcError("InvalidArgumentsError", "Topic is required")
        if is_blank(topic) or not self.auth.allows(call.component, MQTTPROXY, operation, topic):
            raise IpcError("UnauthorizedError", "Not Authorized")
        return topic

    async def publish_to_iot_core(self, call: Call) -> dict[str, Any]:
        check_blob(call.request.get("payload"))  # deserialized first, as by the Nucleus
        topic = self._authorize(call, PUBLISH, str_field(call, "topicName"))
        if any(c in topic for c in "+#"):
            raise IpcError("InvalidArgumentsError", "Publish topic must not contain a wildcard.")
        payload_b64 = call.request.get("payload")
        if payload_b64 is None:
            raise IpcError("InvalidArgumentsError", "Payload is required")
        qos = _qos(call)
        try:
            payload = base64.b64decode(str(payload_b64), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise IpcError("InvalidArgumentsError", "Payload must be base64") from exc
        bridge = self.bridge
        if bridge is None:
            raise IpcError("ServiceError", NO_BROKER)
        retain = bool(call.request.get("retain") or False)
        try:
            await bridge.publish(topic, payload, qos, retain)
        except GgvisionError as exc:
            # MqttProxyIPCAgent's message
            raise IpcError("ServiceError", f"Publish to topic {topic} failed: {exc}") from exc
        return {}

    async def subscribe_to_iot_core(self, call: Call) -> Streaming:
        topic = self._authorize(call, SUBSCRIBE, str_field(call, "topicName"))
        qos = _qos(call)
        bridge = self.bridge
        if bridge is None:
            raise IpcError("ServiceError", NO_BROKER)
        stream = call.stream
        ready = False

        def on_message(msg_topic: str, payload: bytes, retain: bool) -> None:
            # Messages that arrive before the subscribe response is out are dropped (as the
            # Nucleus).
            if not ready:
                return
            body = {
                "message": {
                    "topicName": msg_topic,
                    "payload": base64.b64encode(payload).decode(),
                    "retain": retain,
                }
            }
            stream.send_event_bytes(EVENT_MODEL, json.dumps(body).encode())

        try:
            unsubscribe = await bridge.subscribe(topic, qos, on_message)
        except GgvisionError as exc:
            raise IpcError(
                "ServiceError",
                f"Subscribe to topic {topic} failed with error {exc}",  # the Nucleus's message
                context={"reasonString": str(exc)},
            ) from exc

        def after() -> None:
            nonlocal ready
            if stream.is_open:
                ready = True
                stream.on_close(unsubscribe)
            else:
                unsubscribe()

        return Streaming({}, after)
