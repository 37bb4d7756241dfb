"""The components this core knows: SVCUID tokens, configurations (with the defaults a RESET goes
back to), compiled ``accessControl``, versions and lifecycle states.

What the Nucleus keeps in its kernel's service registry and config tree, as far as IPC needs it.
Each part of the core gets it through the narrow interface it uses: the IPC server resolves
tokens, the agents authorize calls and report states, deployments read and replace
configurations (:class:`ggvision.core.deployments.ConfigRegistry`).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Mapping
from typing import Any

from ggvision.core.auth import AccessControl
from ggvision.core.configstore import ConfigStore
from ggvision.errors import GgvisionError

log = logging.getLogger(__name__)

StateListener = Callable[[str, str], None]


class ComponentRegistry:
    def __init__(self) -> None:
        self.config = ConfigStore()
        self.versions: dict[str, str] = {}
        self._tokens: dict[str, str] = {}
        self._token_of: dict[str, str] = {}
        self._access: dict[str, AccessControl] = {}
        self._defaults: dict[str, dict[str, Any]] = {}
        self._states: dict[str, str] = {}
        self._state_listeners: list[StateListener] = []

    # --- registration ---------------------------------------------------------------------
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
        if not name or not isinstance(name, str):
            raise GgvisionError("component name must be a non-empty string")
        current = self._token_of.get(name)
        if token is not None and (
            current not in (None, token) or self._tokens.get(token, name) != name
        ):
            raise GgvisionError(f"the token given for {name} is in use or not its own")
        cfg = dict(configuration or {})
        self.config.set_component(name, cfg)
        self._defaults[name] = dict(defaults if defaults is not None else cfg)
        self._access[name] = AccessControl(name, cfg.get("accessControl"))
        self.versions[name] = version
        if current is None:
            token = token or secrets.token_urlsafe(24)
            self._token_of[name] = token
            self._tokens[token] = name
        else:
            token = current
        self._states.setdefault(name, "NEW")
        return token

    def unregister_component(self, name: str) -> None:
        token = self._token_of.pop(name, None)
        if token is not None:
            self._tokens.pop(token, None)
        self._access.pop(name, None)
        self._defaults.pop(name, None)
        self._states.pop(name, None)
        self.versions.pop(name, None)
        self.config.remove_component(name)

    def components(self) -> list[str]:
        return list(self._token_of)

    def has_component(self, name: str) -> bool:
        return self.config.has_component(name)

    def token_of(self, name: str) -> str | None:
        return self._token_of.get(name)

    def component_for_token(self, token: str) -> str | None:
        return self._tokens.get(token) if token else None

    def version_of(self, name: str) -> str:
        return self.versions.get(name, "0.0.0")

    # --- configuration --------------------------------------------------------------------
    def configuration_of(self, name: str) -> dict[str, Any]:
        return self.config.snapshot(name)

    def defaults_of(self, name: str) -> dict[str, Any]:
        return dict(self._defaults.get(name, {}))

    def update_component_configuration(self, name: str, configuration: Mapping[str, Any]) -> None:
        """Apply a (validated) new configuration: watchers fire, accessControl recompiles."""
        cfg = dict(configuration)
        self.config.set_component(name, cfg)
        self._access[name] = AccessControl(name, cfg.get("accessControl"))

    # --- authorization --------------------------------------------------------------------
    def access(self, name: str) -> AccessControl:
        return self._access.get(name) or AccessControl(name, None)

    def allows(
        self, component: str, destination: str, operation: str, resource: str | None
    ) -> bool:
        return self.access(component).allows(destination, operation, resource)

    # --- states ---------------------------------------------------------------------------
    def set_state(self, name: str, state: str, *, reported: bool = False) -> None:
        old = self._states.get(name)
        self._states[name] = state
        if old != state:
            log.info(
                "%s is %s",
                name,
                state,
                extra={
                    "event": "component.state",
                    "component": name,
                    "state": state,
                    "reported": reported,
                },
            )
        for listener in list(self._state_listeners):
            try:
                listener(name, state)
            except Exception:
                log.exception("state listener failed")

    def state_of(self, name: str) -> str | None:
        return self._states.get(name)

    def states(self) -> dict[str, str]:
        return dict(self._states)

    def add_state_listener(self, listener: StateListener) -> None:
        self._state_listeners.append(listener)
