"""Client of a running core's admin socket (newline-delimited JSON, one request per connection).

Used by ``ggvision core exec|deploy|status``. Blocking on purpose: the callers are CLIs.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ggvision.errors import AdminError

_MAX_REPLY = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Registration:
    token: str
    ipc_socket: Path


@dataclass(frozen=True, slots=True)
class Deployment:
    deployment_id: str
    status: str
    message: str


class AdminClient:
    def __init__(self, path: Path, *, timeout_s: float = 60.0) -> None:
        self.path = path
        self.timeout_s = timeout_s

    def request(self, payload: Mapping[str, Any], *, wait: bool = False) -> dict[str, Any]:
        """Send one request; return the reply, or raise AdminError (no core, or ``ok: false``).
        ``wait``: no timeout for the answer (a deployment that components may defer)."""
        op = payload.get("op")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(self.timeout_s)
                sock.connect(str(self.path))
                sock.sendall(json.dumps(payload).encode() + b"\n")
                if wait:
                    sock.settimeout(None)
                buf = bytearray()
                while b"\n" not in buf:
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    buf += chunk
                    if len(buf) > _MAX_REPLY:
                        raise AdminError(f"admin reply to {op} is too long")
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise AdminError(
                f"no core is running at {self.path} (start one with `ggvision core run`)"
            ) from exc
        except TimeoutError as exc:
            raise AdminError(f"admin request {op} timed out after {self.timeout_s:g} s") from exc
        except OSError as exc:
            raise AdminError(f"admin socket {self.path}: {exc}") from exc
        line, _, _ = bytes(buf).partition(b"\n")
        if not line:
            raise AdminError(f"the core closed the admin connection without answering {op}")
        try:
            reply = json.loads(line)
        except ValueError as exc:
            raise AdminError(f"admin reply to {op} is not JSON") from exc
        if not isinstance(reply, dict):
            raise AdminError(f"admin reply to {op} is not an object")
        if not reply.get("ok"):
            raise AdminError(f"{op} failed: {reply.get('error') or 'no reason given'}")
        return reply

    def register(
        self,
        component: str,
        configuration: Mapping[str, Any],
        *,
        defaults: Mapping[str, Any] | None = None,
        version: str | None = None,
    ) -> Registration:
        req: dict[str, Any] = {
            "op": "register",
            "component": component,
            "configuration": dict(configuration),
        }
        if defaults is not None:
            req["defaults"] = dict(defaults)
        if version is not None:
            req["version"] = version
        reply = self.request(req)
        token, ipc = reply.get("token"), reply.get("ipcSocket")
        if not isinstance(token, str) or not isinstance(ipc, str):
            raise AdminError("register reply lacks token or ipcSocket")
        return Registration(token, Path(ipc))

    def unregister(self, component: str) -> None:
        self.request({"op": "unregister", "component": component})

    def deploy(
        self,
        component_to_configuration: Mapping[str, Any],
        component_update_policy: Mapping[str, Any] | None = None,
    ) -> Deployment:
        """Deploy and wait for the result (however long components defer the update);
        ``component_update_policy``: ``{"action": ..., "timeoutInSeconds": N}`` as
        CreateDeployment takes it (default: the core's)."""
        req: dict[str, Any] = {
            "op": "deploy",
            "componentToConfiguration": dict(component_to_configuration),
        }
        if component_update_policy is not None:
            req["componentUpdatePolicy"] = dict(component_update_policy)
        reply = self.request(req, wait=True)
        return Deployment(
            str(reply.get("deploymentId", "")),
            str(reply.get("status", "")),
            str(reply.get("message", "")),
        )

    def states(self) -> dict[str, str]:
        states = self.request({"op": "states"}).get("states")
        if not isinstance(states, dict):
            raise AdminError("states reply lacks states")
        return {str(k): str(v) for k, v in states.items()}
