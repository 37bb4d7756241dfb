"""Configuration store operations (``aws.greengrass.ipc.configstore``): get, update and watch a
component's configuration, and take part in validating a deployment's proposed configuration."""

from __future__ import annotations

import json
import math
from typing import Any

from ggvision.core.configstore import ConfigStore
from ggvision.core.deployments import Deployments
from ggvision.core.services import Call, Operation, Streaming, str_field
from ggvision.errors import IpcError

CONFIG_EVENT = "aws.greengrass#ConfigurationUpdateEvents"
VALIDATE_EVENT = "aws.greengrass#ValidateConfigurationUpdateEvents"


def epoch_ms(seconds: float) -> int:
    """A request's ``timestamp`` (epoch seconds, as the SDK sends a datetime) in epoch
    milliseconds, as the Nucleus reads it: whole seconds and nanoseconds truncated, then the
    milliseconds floored (``Instant.ofEpochSecond(s, ns).toEpochMilli()``)."""
    whole = math.trunc(seconds)
    nanos = whole * 1_000_000_000 + math.trunc((seconds - whole) * 1e9)
    return nanos // 1_000_000


def _key_path(call: Call) -> list[str]:
    kp = call.request.get("keyPath")
    if kp is None:
        return []
    if not isinstance(kp, list) or not all(isinstance(k, str) for k in kp):
        raise IpcError("InvalidArgumentsError", "keyPath must be a list of strings")
    return list(kp)


class ConfigStoreAgent:
    """Over the core's :class:`ConfigStore` and its :class:`Deployments`. A component writes
    only its own configuration, never its ``accessControl``."""

    def __init__(self, store: ConfigStore, deployments: Deployments) -> None:
        self.store = store
        self.deployments = deployments

    def operations(self) -> list[Operation]:
        return [
            Operation("aws.greengrass#GetConfiguration", self.get_configuration),
            Operation("aws.greengrass#UpdateConfiguration", self.update_configuration),
            Operation(
                "aws.greengrass#SubscribeToConfigurationUpdate",
                self.subscribe_to_configuration_update,
                streaming=True,
                event_model=CONFIG_EVENT,
            ),
            Operation(
                "aws.greengrass#SubscribeToValidateConfigurationUpdates",
                self.subscribe_to_validate_configuration_updates,
                streaming=True,
                event_model=VALIDATE_EVENT,
            ),
            Operation(
                "aws.greengrass#SendConfigurationValidityReport",
                self.send_configuration_validity_report,
            ),
        ]

    def get_configuration(self, call: Call) -> dict[str, Any]:
        component = str_field(call, "componentName") or call.component
        path = _key_path(call)
        value = self.store.get(component, path)
        if path and not isinstance(value, dict):
            value = {path[-1]: value}
        return {"componentName": component, "value": value}

    def update_configuration(self, call: Call) -> dict[str, Any]:
        req = call.request
        path = _key_path(call)
        ts = req.get("timestamp")
        if (
            ts is None
            or isinstance(ts, bool)
            or not isinstance(ts, int | float)
            or not math.isfinite(ts)
        ):
            raise IpcError("InvalidArgumentsError", "timestamp is required")
        if "valueToMerge" not in req:
            raise IpcError("InvalidArgumentsError", "valueToMerge is required")
        value = req["valueToMerge"]
        if path[:1] == ["accessControl"] or (
            not path and isinstance(value, dict) and "accessControl" in value
        ):
            raise IpcError(
                "InvalidArgumentsError",
                "Config update is not allowed for following fields [accessControl]",
            )
        store = self.store
        try:
            store.get(call.component, path)
            existed = True
        except IpcError:
            existed = False
        # A container created by this call is stamped "now" and never stale, as in the Nucleus.
        stamp = epoch_ms(ts) if existed else None
        # A map onto a value replaces the value with a container (ConfigStoreIPCEventStreamAgent:
        # topic.parent.updateFromMap), as a value onto a container replaces the container.
        store.merge(call.component, path, value, stamp)
        # Like the Nucleus: merge first (leaves stamped newer keep their values), then refuse
        # when the node at keyPath (a container: its newest leaf) is newer than the request.
        latest = store.modtime(call.component, path) if stamp is not None else None
        if stamp is not None and latest is not None and latest > stamp:
            raise IpcError(
                "FailedUpdateConditionCheckError",
                "Proposed timestamp is older than the config's latest modified timestamp",
            )
        return {}

    def subscribe_to_configuration_update(self, call: Call) -> Streaming:
        component = str_field(call, "componentName") or call.component
        path = _key_path(call)
        store = self.store
        store.get(component, path)  # ResourceNotFoundError when missing
        stream = call.stream

        def on_change(comp: str, leaf: list[str]) -> None:
            stream.send_event_bytes(
                CONFIG_EVENT,
                _json({"configurationUpdateEvent": {"componentName": comp, "keyPath": leaf}}),
            )

        def register() -> None:
            if stream.is_open:
                stream.on_close(store.watch(component, path, on_change))

        return Streaming({}, register)

    def subscribe_to_validate_configuration_updates(self, call: Call) -> Streaming:
        deployments = self.deployments
        stream = call.stream
        component = call.component

        def register() -> None:
            if stream.is_open:
                deployments.add_validator(component, stream)
                stream.on_close(lambda: deployments.remove_validator(component, stream))

        return Streaming({}, register)

    def send_configuration_validity_report(self, call: Call) -> dict[str, Any]:
        report = call.request.get("configurationValidityReport")
        if not isinstance(report, dict):
            raise IpcError("InvalidArgumentsError", "configurationValidityReport is required")
        status = report.get("status")
        if status not in ("ACCEPTED", "REJECTED"):
            raise IpcError("InvalidArgumentsError", "status must be ACCEPTED or REJECTED")
        deployment_id = report.get("deploymentId")
        if not isinstance(deployment_id, str):
            raise IpcError("InvalidArgumentsError", "deploymentId is required")
        message = report.get("message")
        self.deployments.report(
            call.component,
            deployment_id,
            status == "ACCEPTED",
            str(message) if message is not None else "",
        )
        return {}


def _json(obj: Any) -> bytes:
    return json.dumps(obj).encode()
