"""Configuration deployments: ``{"Comp": {"MERGE": {...}, "RESET": ["/ptr"]}}`` applied the way the
Nucleus applies a deployment's configuration update.

Before anything changes, components subscribed to SubscribeToValidateConfigurationUpdates get the
proposed configuration and must answer with SendConfigurationValidityReport; one REJECTED report
(or silence past the timeout, which the Nucleus treats as acceptance) decides. Only then is the
new configuration applied, which fires SubscribeToConfigurationUpdate events.

:class:`Deployments` sees only a :class:`ConfigRegistry` (each component's configuration and
defaults) and, of each validating component, an :class:`EventStream` to send the proposal on.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from ggvision.errors import ConfigError, IpcError

log = logging.getLogger(__name__)

VALIDATE_EVENT = "aws.greengrass#ValidateConfigurationUpdateEvents"
DEFAULT_VALIDATION_TIMEOUT_S = 20.0


@dataclass(slots=True)
class DeployResult:
    deployment_id: str
    status: str  # SUCCEEDED | FAILED
    message: str = ""
    created_on: float = field(default_factory=time.time)


def _pointer(ptr: str) -> list[str]:
    if ptr in ("", "/"):
        return []
    if not ptr.startswith("/"):
        raise ConfigError(f"RESET path {ptr!r} must be a JSON pointer starting with '/'")
    return [p.replace("~1", "/").replace("~0", "~") for p in ptr[1:].split("/")]


def deep_merge(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    for k, v in update.items():
        if isinstance(v, Mapping) and isinstance(base.get(k), dict):
            deep_merge(base[k], v)
        else:
            base[k] = copy.deepcopy(v)
    return base


def apply_update(
    current: Mapping[str, Any], defaults: Mapping[str, Any], update: Mapping[str, Any]
) -> dict[str, Any]:
    """RESET (to the defaults, at JSON pointers) first, then MERGE, as a deployment does."""
    unknown = set(update) - {"MERGE", "RESET"}
    if unknown:
        raise ConfigError(f"configuration update keys must be MERGE/RESET, got {sorted(unknown)}")
    new = copy.deepcopy(dict(current))
    for ptr in update.get("RESET") or []:
        path = _pointer(str(ptr))
        if not path:
            new = copy.deepcopy(dict(defaults))
            continue
        default: Any = defaults
        for key in path:
            default = default.get(key) if isinstance(default, Mapping) else None
        node: Any = new
        for key in path[:-1]:
            if not isinstance(node, dict):
                node = None
                break
            node = node.setdefault(key, {})
        if isinstance(node, dict):
            if default is None:
                node.pop(path[-1], None)
            else:
                node[path[-1]] = copy.deepcopy(default)
    merge = update.get("MERGE")
    if merge is not None:
        if isinstance(merge, str):
            merge = json.loads(merge)
        if not isinstance(merge, Mapping):
            raise ConfigError("MERGE must be an object")
        deep_merge(new, merge)
    return new


class ConfigRegistry(Protocol):
    """The components' configurations, as a deployment reads and replaces them."""

    def has_component(self, name: str) -> bool: ...

    def configuration_of(self, name: str) -> dict[str, Any]: ...

    def defaults_of(self, name: str) -> dict[str, Any]: ...

    def update_component_configuration(
        self, name: str, configuration: Mapping[str, Any]
    ) -> None: ...


class EventStream(Protocol):
    """A validating component's SubscribeToValidateConfigurationUpdates stream."""

    @property
    def is_open(self) -> bool: ...

    def send_event_bytes(self, model: str, payload: bytes) -> None: ...


class Deployments:
    def __init__(
        self,
        registry: ConfigRegistry,
        validation_timeout_s: float = DEFAULT_VALIDATION_TIMEOUT_S,
    ) -> None:
        self.registry = registry
        self.validation_timeout_s = validation_timeout_s
        self._validators: dict[str, list[EventStream]] = {}
        self._pending: dict[tuple[str, str], asyncio.Future[tuple[bool, str]]] = {}
        self.history: dict[str, DeployResult] = {}

    def add_validator(self, component: str, stream: EventStream) -> None:
        self._validators.setdefault(component, []).append(stream)

    def remove_validator(self, component: str, stream: EventStream) -> None:
        lst = self._validators.get(component)
        if lst and stream in lst:
            lst.remove(stream)

    def report(self, component: str, deployment_id: str, accepted: bool, message: str) -> None:
        fut = self._pending.get((component, deployment_id))
        if fut is None or fut.done():
            raise IpcError(
                "InvalidArgumentsError", "Validation request either timed out or was never made"
            )
        fut.set_result((accepted, message))

    async def deploy(self, component_to_configuration: Mapping[str, Any]) -> DeployResult:
        deployment_id = str(uuid.uuid4())
        registry = self.registry
        proposals: dict[str, dict[str, Any]] = {}
        try:
            for comp, update in component_to_configuration.items():
                if not registry.has_component(comp):
                    raise ConfigError(f"component {comp} is not part of this core")
                if not isinstance(update, Mapping):
                    raise ConfigError(f"configuration update for {comp} must be an object")
                proposals[comp] = apply_update(
                    registry.configuration_of(comp), registry.defaults_of(comp), update
                )
        except (ConfigError, ValueError) as exc:
            return self._done(DeployResult(deployment_id, "FAILED", str(exc)))

        waits: list[tuple[str, asyncio.Future[tuple[bool, str]]]] = []
        loop = asyncio.get_running_loop()
        for comp, proposed in proposals.items():
            streams = [s for s in self._validators.get(comp, []) if s.is_open]
            if not streams:
                continue
            event = {
                "validateConfigurationUpdateEvent": {
                    "configuration": proposed,
                    "deploymentId": deployment_id,
                }
            }
            fut: asyncio.Future[tuple[bool, str]] = loop.create_future()
            self._pending[(comp, deployment_id)] = fut
            payload = json.dumps(event).encode()
            for s in streams:
                s.send_event_bytes(VALIDATE_EVENT, payload)
            waits.append((comp, fut))
        try:
            for comp, fut in waits:
                try:
                    accepted, message = await asyncio.wait_for(
                        asyncio.shield(fut), self.validation_timeout_s
                    )
                except TimeoutError:
                    log.warning(
                        "no validity report from %s; proceeding",
                        comp,
                        extra={"event": "deploy.validation_timeout", "component": comp},
                    )
                    continue
                if not accepted:
                    return self._done(
                        DeployResult(
                            deployment_id,
                            "FAILED",
                            f"{comp} rejected the configuration: {message}".rstrip(": "),
                        )
                    )
        finally:
            for comp, _ in waits:
                self._pending.pop((comp, deployment_id), None)

        for comp, proposed in proposals.items():
            registry.update_component_configuration(comp, proposed)
        return self._done(DeployResult(deployment_id, "SUCCEEDED", ""))

    def _done(self, result: DeployResult) -> DeployResult:
        self.history[result.deployment_id] = result
        log.info(
            "deployment %s %s %s",
            result.deployment_id,
            result.status,
            result.message,
            extra={"event": "deploy.done", "status": result.status},
        )
        return result
