"""The core's admin socket: newline-delimited JSON, one request per line, owner-only (0600).

Used by ``ggvision core exec`` (register a component on a running core), ``core deploy`` and
``core status``. Requests: ``register`` {component, configuration, defaults?, version?} ->
{token, ipcSocket}; ``unregister`` {component}; ``deploy`` {componentToConfiguration,
componentUpdatePolicy?: {action?, timeoutInSeconds?}} -> {deploymentId, status, message};
``states`` -> {states}; ``set_state`` {component, state}.
Replies carry ``ok``; failures ``error``.

Not part of the IPC server: whoever composes the core (``ggvision core run``, the test harness)
starts an :class:`AdminServer` beside it, over the narrow :class:`AdminCore` it needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from ggvision.core.deployments import DeployResult, UpdatePolicy
from ggvision.core.unixsocket import owner_only_socket
from ggvision.errors import GgvisionError

log = logging.getLogger(__name__)
MAX_LINE = 4 * 1024 * 1024


class DeploymentDefaults(Protocol):
    @property
    def update_policy(self) -> UpdatePolicy: ...


class AdminCore(Protocol):
    """What the admin requests do to the core."""

    @property
    def socket_path(self) -> Path: ...

    def register_component(
        self,
        name: str,
        configuration: Mapping[str, Any] | None = None,
        *,
        defaults: Mapping[str, Any] | None = None,
        version: str = "0.0.0",
    ) -> str: ...

    def unregister_component(self, name: str) -> None: ...

    @property
    def deployments(self) -> DeploymentDefaults: ...

    async def deploy_configuration(
        self,
        component_to_configuration: Mapping[str, Any],
        update_policy: UpdatePolicy | None = None,
    ) -> DeployResult: ...

    def states(self) -> dict[str, str]: ...

    def set_state(self, name: str, state: str) -> None: ...


async def _register(core: AdminCore, req: dict[str, Any]) -> dict[str, Any]:
    name = req.get("component")
    cfg = req.get("configuration") or {}
    if not isinstance(name, str) or not isinstance(cfg, dict):
        raise GgvisionError("register needs component (string) and configuration (object)")
    token = core.register_component(
        name, cfg, defaults=req.get("defaults"), version=str(req.get("version") or "0.0.0")
    )
    return {"token": token, "ipcSocket": str(core.socket_path)}


async def _unregister(core: AdminCore, req: dict[str, Any]) -> dict[str, Any]:
    name = req.get("component")
    if not isinstance(name, str):
        raise GgvisionError("unregister needs component")
    core.unregister_component(name)
    return {}


async def _deploy(core: AdminCore, req: dict[str, Any]) -> dict[str, Any]:
    c2c = req.get("componentToConfiguration")
    if not isinstance(c2c, dict):
        raise GgvisionError("deploy needs componentToConfiguration (object)")
    policy = UpdatePolicy.from_request(
        req.get("componentUpdatePolicy"), core.deployments.update_policy
    )
    result = await core.deploy_configuration(c2c, policy)
    return {
        "deploymentId": result.deployment_id,
        "status": result.status,
        "message": result.message,
    }


async def _states(core: AdminCore, req: dict[str, Any]) -> dict[str, Any]:
    return {"states": core.states()}


async def _set_state(core: AdminCore, req: dict[str, Any]) -> dict[str, Any]:
    name, state = req.get("component"), req.get("state")
    if not isinstance(name, str) or not isinstance(state, str):
        raise GgvisionError("set_state needs component and state")
    core.set_state(name, state)
    return {}


AdminHandler = Callable[[AdminCore, dict[str, Any]], Awaitable[dict[str, Any]]]
OPERATIONS: Mapping[str, AdminHandler] = {
    "register": _register,
    "unregister": _unregister,
    "deploy": _deploy,
    "states": _states,
    "set_state": _set_state,
}


async def _handle(core: AdminCore, req: dict[str, Any]) -> dict[str, Any]:
    op = req.get("op")
    handler = OPERATIONS.get(op) if isinstance(op, str) else None
    if handler is None:
        raise GgvisionError(f"unknown admin op {op!r}")
    return await handler(core, req)


async def serve(
    core: AdminCore, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """Answer one admin connection until it closes."""
    try:
        while True:
            try:
                line = await reader.readuntil(b"\n")
            except asyncio.IncompleteReadError:
                return
            except asyncio.LimitOverrunError:
                writer.write(b'{"ok": false, "error": "request too long"}\n')
                return
            try:
                req = json.loads(line)
                if not isinstance(req, dict):
                    raise GgvisionError("request must be a JSON object")
                reply = {"ok": True, **(await _handle(core, req))}
            except (GgvisionError, ValueError) as exc:
                reply = {"ok": False, "error": str(exc)}
            except Exception as exc:  # boundary
                log.exception("admin request failed", extra={"event": "admin.error"})
                reply = {"ok": False, "error": f"internal error: {type(exc).__name__}"}
            writer.write(json.dumps(reply).encode() + b"\n")
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        return
    finally:
        writer.close()


class AdminServer:
    """The admin socket of one core, started and stopped by whoever composes that core."""

    def __init__(self, core: AdminCore, socket_path: str | os.PathLike[str]) -> None:
        self.core = core
        self.socket_path = Path(socket_path)
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        core = self.core
        with owner_only_socket(self.socket_path):
            self._server = await asyncio.start_unix_server(
                lambda r, w: serve(core, r, w), path=str(self.socket_path)
            )

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
