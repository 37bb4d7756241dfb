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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, Protocol

from ggvision.errors import ConfigError, IpcError

log = logging.getLogger(__name__)

VALIDATE_EVENT = "aws.greengrass#ValidateConfigurationUpdateEvents"
DEFAULT_VALIDATION_TIMEOUT_S = 20.0
# DeploymentComponentUpdatePolicy's defaults (CreateDeployment; the Nucleus's ComponentUpdatePolicy)
DEFAULT_UPDATE_TIMEOUT_S = 60.0
UpdateAction = Literal["NOTIFY_COMPONENTS", "SKIP_NOTIFY_COMPONENTS"]
NOTIFY_COMPONENTS: Final = "NOTIFY_COMPONENTS"
SKIP_NOTIFY_COMPONENTS: Final = "SKIP_NOTIFY_COMPONENTS"


@dataclass(frozen=True, slots=True)
class UpdatePolicy:
    """A deployment's ``componentUpdatePolicy``: whether subscribers are notified and may defer,
    and how long each round waits for their answers (``timeoutInSeconds``)."""

    action: UpdateAction = NOTIFY_COMPONENTS
    timeout_s: float = DEFAULT_UPDATE_TIMEOUT_S

    @classmethod
    def from_request(cls, raw: Any, default: UpdatePolicy) -> UpdatePolicy:
        """``{"action": ..., "timeoutInSeconds": N}`` as CreateDeployment takes it; what it
        leaves out comes from ``default``. ConfigError when it is malformed."""
        if raw is None:
            return default
        if not isinstance(raw, Mapping) or set(raw) - {"action", "timeoutInSeconds"}:
            raise ConfigError(
                "componentUpdatePolicy must be an object with action and/or timeoutInSeconds"
            )
        raw_action = raw.get("action", default.action)
        if raw_action == NOTIFY_COMPONENTS:
            action: UpdateAction = NOTIFY_COMPONENTS
        elif raw_action == SKIP_NOTIFY_COMPONENTS:
            action = SKIP_NOTIFY_COMPONENTS
        else:
            raise ConfigError(
                f"componentUpdatePolicy action must be {NOTIFY_COMPONENTS} or "
                f"{SKIP_NOTIFY_COMPONENTS}, got {raw_action!r}"
            )
        timeout = raw.get("timeoutInSeconds", default.timeout_s)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout < 0:
            raise ConfigError("componentUpdatePolicy timeoutInSeconds must be a number >= 0")
        return cls(action, float(timeout))


SKIP_NOTIFY = UpdatePolicy(SKIP_NOTIFY_COMPONENTS, 0.0)


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


class Deferral(Protocol):
    """A subscriber's answer to a PreComponentUpdateEvent (DeferComponentUpdate)."""

    @property
    def deployment_id(self) -> str: ...

    @property
    def recheck_after_ms(self) -> int | None: ...

    @property
    def message(self) -> str: ...


class UpdateNotifier(Protocol):
    """The SubscribeToComponentUpdates subscribers, as a deployment asks them."""

    def send_pre_update(
        self, deployment_id: str, is_ggc_restarting: bool = False
    ) -> Sequence[asyncio.Future[Any]]: ...

    def send_post_update(self, deployment_id: str) -> None: ...

    def discard(self) -> None: ...


class Deployments:
    def __init__(
        self,
        registry: ConfigRegistry,
        validation_timeout_s: float = DEFAULT_VALIDATION_TIMEOUT_S,
        *,
        notifier: UpdateNotifier | None = None,
        update_policy: UpdatePolicy | None = None,
    ) -> None:
        """``notifier``: the update subscribers (none: nobody is notified); ``update_policy``:
        what a deployment that names none uses (default NOTIFY_COMPONENTS, 60 s)."""
        self.registry = registry
        self.validation_timeout_s = validation_timeout_s
        self.notifier = notifier
        self.update_policy = update_policy or UpdatePolicy()
        self._one_at_a_time = asyncio.Lock()
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

    async def deploy(
        self,
        component_to_configuration: Mapping[str, Any],
        update_policy: UpdatePolicy | None = None,
    ) -> DeployResult:
        """Apply a configuration deployment (one at a time); ``update_policy`` defaults to the
        core's (:attr:`update_policy`)."""
        async with self._one_at_a_time:
            return await self._deploy(component_to_configuration, update_policy)

    async def _deploy(
        self, component_to_configuration: Mapping[str, Any], update_policy: UpdatePolicy | None
    ) -> DeployResult:
        deployment_id = str(uuid.uuid4())
        policy = update_policy or self.update_policy
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

        notifier = self.notifier if policy.action == NOTIFY_COMPONENTS else None
        if notifier is None:
            return await self._apply(deployment_id, proposals)
        await self._wait_disruptable(notifier, deployment_id, policy.timeout_s)
        try:
            return await self._apply(deployment_id, proposals)
        finally:
            notifier.send_post_update(deployment_id)

    async def _wait_disruptable(
        self, notifier: UpdateNotifier, deployment_id: str, timeout_s: float
    ) -> None:
        """The Nucleus's UpdateSystemPolicyService loop: notify, wait up to ``timeout_s`` for the
        answers, sleep the largest ``recheckAfterMs`` asked for and notify again, until a round
        asks for none."""
        rounds = 0
        while True:
            rounds += 1
            futures = list(notifier.send_pre_update(deployment_id, False))
            if futures:
                await asyncio.wait(futures, timeout=timeout_s)
            recheck_ms = 0
            for fut in futures:
                if not fut.done() or fut.cancelled():
                    continue
                deferral: Deferral = fut.result()
                if deferral.deployment_id == deployment_id and deferral.recheck_after_ms:
                    recheck_ms = max(recheck_ms, deferral.recheck_after_ms)
            unanswered = sum(1 for f in futures if not f.done())
            if recheck_ms <= 0:
                notifier.discard()
                log.info(
                    "deployment %s goes ahead after %d notification round(s)%s",
                    deployment_id,
                    rounds,
                    f"; {unanswered} subscriber(s) did not answer" if unanswered else "",
                    extra={"event": "deploy.update_scheduled", "rounds": rounds},
                )
                return
            log.info(
                "deployment %s deferred for %d ms",
                deployment_id,
                recheck_ms,
                extra={"event": "deploy.update_deferred", "recheck_after_ms": recheck_ms},
            )
            await asyncio.sleep(recheck_ms / 1000)

    async def _apply(
        self, deployment_id: str, proposals: Mapping[str, dict[str, Any]]
    ) -> DeployResult:
        """Validate the proposals with their components, then apply them."""
        registry = self.registry
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
