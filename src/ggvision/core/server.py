"""The local Greengrass IPC core that the unmodified ``awsiotsdk`` client
(``GreengrassCoreIPCClientV2``) talks to: the composition root of the core's parts.

:class:`IpcCore` wires, and owns nothing but the wiring of:

* the :class:`~ggvision.core.registry.ComponentRegistry` (SVCUID tokens, configurations, compiled
  ``accessControl``, versions, states);
* local pub/sub (:class:`~ggvision.core.services.pubsub.PubSub`), configuration
  :class:`~ggvision.core.deployments.Deployments` and, optionally, an IoT Core bridge;
* one agent per IPC service, each given only what it uses;
* the :class:`~ggvision.core.ipcserver.IpcServer` that serves the agents' operations.

Its methods are the core's public face for whoever runs it (the runner, ``ggvision core``, the
test harness); no part calls back into it. The admin socket is not part of it:
:class:`ggvision.core.admin.AdminServer` is started beside it by whoever composes the core.
Everything runs on one event loop; IPC handlers never block it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ggvision.core.deployments import (
    DEFAULT_UPDATE_TIMEOUT_S,
    Deployments,
    DeployResult,
    UpdatePolicy,
)
from ggvision.core.ipcserver import IpcServer
from ggvision.core.limits import Limits
from ggvision.core.mqtt import IotBridge
from ggvision.core.registry import ComponentRegistry, StateListener
from ggvision.core.rpc import Connection
from ggvision.core.services.cli import CliAgent
from ggvision.core.services.config import ConfigStoreAgent
from ggvision.core.services.lifecycle import LifecycleAgent
from ggvision.core.services.mqttproxy import MqttProxyAgent
from ggvision.core.services.pubsub import PubSub, PubSubAgent

log = logging.getLogger(__name__)


class IpcCore:
    def __init__(
        self,
        socket_path: str | os.PathLike[str],
        *,
        iot: IotBridge | None = None,
        validation_timeout_s: float = 20.0,
        limits: Limits | None = None,
        component_update_timeout_s: float = DEFAULT_UPDATE_TIMEOUT_S,
    ) -> None:
        """``limits``: what local clients can make the core hold (:class:`Limits`' defaults
        when None), and whose profile it keeps to (``Limits.for_profile("lite")``: Greengrass
        nucleus lite's); ``component_update_timeout_s``: how long a deployment that names no
        ``componentUpdatePolicy`` waits for DeferComponentUpdate answers in each round (the
        Nucleus's 60 s)."""
        self.registry = registry = ComponentRegistry()
        self.server = IpcServer(socket_path, registry.component_for_token, limits)
        self._iot = iot
        self.config = registry.config
        self.pubsub = PubSub()
        self.lifecycle = LifecycleAgent(registry)
        self.deployments = Deployments(
            registry,
            validation_timeout_s,
            notifier=self.lifecycle,
            update_policy=UpdatePolicy(timeout_s=component_update_timeout_s),
        )
        for agent in (
            PubSubAgent(
                registry,
                self.pubsub,
                max_topic_bytes=None
                if self.server.limits.lite is None
                else (self.server.limits.lite.max_topic_bytes),
            ),
            ConfigStoreAgent(registry.config, self.deployments),
            self.lifecycle,
            CliAgent(registry, self.deployments, registry.config, registry),
            MqttProxyAgent(registry, iot),
        ):
            self.server.serve(agent)

    @property
    def iot(self) -> IotBridge | None:
        return self._iot

    @property
    def socket_path(self) -> Path:
        return self.server.socket_path

    @property
    def connections(self) -> set[Connection]:
        return self.server.connections

    @property
    def versions(self) -> dict[str, str]:
        return self.registry.versions

    # --- components ---------------------------------------------------------------------------
    def register_component(
        self,
        name: str,
        configuration: Mapping[str, Any] | None = None,
        *,
        defaults: Mapping[str, Any] | None = None,
        version: str = "0.0.0",
        token: str | None = None,
    ) -> str:
        """Register (or re-register) a component; returns its SVCUID token (stable per name).

        ``token``: reuse a token an earlier core issued (a restarted core, so that running
        components reconnect with the token they hold)."""
        return self.registry.register_component(
            name, configuration, defaults=defaults, version=version, token=token
        )

    def unregister_component(self, name: str) -> None:
        """Forget ``name`` (token, configuration, state) and close its connections."""
        self.registry.unregister_component(name)
        self.server.close_component(name)

    def components(self) -> list[str]:
        return self.registry.components()

    def token_of(self, name: str) -> str | None:
        return self.registry.token_of(name)

    def component_for_token(self, token: str) -> str | None:
        return self.registry.component_for_token(token)

    def defaults_of(self, name: str) -> dict[str, Any]:
        return self.registry.defaults_of(name)

    def update_component_configuration(self, name: str, configuration: Mapping[str, Any]) -> None:
        """Apply a (validated) new configuration: watchers fire, accessControl recompiles."""
        self.registry.update_component_configuration(name, configuration)

    # --- states ---------------------------------------------------------------------------------
    def set_state(self, name: str, state: str, *, reported: bool = False) -> None:
        self.registry.set_state(name, state, reported=reported)

    def state_of(self, name: str) -> str | None:
        return self.registry.state_of(name)

    def states(self) -> dict[str, str]:
        return self.registry.states()

    def add_state_listener(self, listener: StateListener) -> None:
        self.registry.add_state_listener(listener)

    async def deploy_configuration(
        self,
        component_to_configuration: Mapping[str, Any],
        update_policy: UpdatePolicy | None = None,
    ) -> DeployResult:
        """A deployment of configuration, as a cloud deployment would make it: subscribers to
        component updates are notified first unless ``update_policy`` says
        SKIP_NOTIFY_COMPONENTS (default: NOTIFY_COMPONENTS with the core's timeout)."""
        return await self.deployments.deploy(component_to_configuration, update_policy)

    # --- running --------------------------------------------------------------------------------
    async def start(self) -> None:
        await self.server.start()
        if self.iot is not None:
            await self.iot.start()
        log.info(
            "IPC core listening on %s",
            self.socket_path,
            extra={"event": "core.start", "socket": str(self.socket_path)},
        )

    async def stop(self) -> None:
        await self.server.stop()
        if self.iot is not None:
            await self.iot.stop()
        log.info("IPC core stopped", extra={"event": "core.stop"})
