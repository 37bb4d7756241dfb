"""The core's admin socket: newline-delimited JSON, one request per line, owner-only (0600).

Used by ``ggvision core exec`` (register a component on a running core), ``core deploy`` and
``core status``. Requests: ``register`` {component, configuration, defaults?, version?} ->
{token, ipcSocket}; ``unregister`` {component}; ``deploy`` {componentToConfiguration} ->
{deploymentId, status, message}; ``states`` -> {states}. Replies carry ``ok``; failures ``error``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import TYPE_CHECKING, Any

from ggvision.errors import GgvisionError

if TYPE_CHECKING:
    from ggvision.core.server import IpcCore

log = logging.getLogger(__name__)
MAX_LINE = 4 * 1024 * 1024


async def _handle(core: IpcCore, req: dict[str, Any]) -> dict[str, Any]:
    op = req.get("op")
    if op == "register":
        name = req.get("component")
        cfg = req.get("configuration") or {}
        if not isinstance(name, str) or not isinstance(cfg, dict):
            raise GgvisionError("register needs component (string) and configuration (object)")
        token = core.register_component(
            name, cfg, defaults=req.get("defaults"), version=str(req.get("version") or "0.0.0")
        )
        return {"token": token, "ipcSocket": str(core.socket_path)}
    if op == "unregister":
        name = req.get("component")
        if not isinstance(name, str):
            raise GgvisionError("unregister needs component")
        core.unregister_component(name)
        return {}
    if op == "deploy":
        c2c = req.get("componentToConfiguration")
        if not isinstance(c2c, dict):
            raise GgvisionError("deploy needs componentToConfiguration (object)")
        result = await core.deploy_configuration(c2c)
        return {
            "deploymentId": result.deployment_id,
            "status": result.status,
            "message": result.message,
        }
    if op == "states":
        return {"states": core.states()}
    if op == "set_state":
        name, state = req.get("component"), req.get("state")
        if not isinstance(name, str) or not isinstance(state, str):
            raise GgvisionError("set_state needs component and state")
        core.set_state(name, state)
        return {}
    raise GgvisionError(f"unknown admin op {op!r}")


async def serve(core: IpcCore, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
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
