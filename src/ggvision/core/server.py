"""The local Greengrass IPC core: an asyncio Unix-socket server that the unmodified ``awsiotsdk``
client (``GreengrassCoreIPCClientV2``) talks to.

It owns the token registry (SVCUID -> component), the compiled ``accessControl`` of every
component, the configuration store, local pub/sub, reported states, configuration deployments
and, optionally, an IoT Core bridge to an MQTT broker. Everything runs on one event loop; IPC
handlers never block it.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import os
import secrets
import stat
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ggvision.core import admin
from ggvision.core.auth import AccessControl
from ggvision.core.configstore import ConfigStore
from ggvision.core.deployments import Deployments, DeployResult
from ggvision.core.rpc import Connection, Stream
from ggvision.core.services import Call, Operation, Streaming, config, lifecycle, mqttproxy, pubsub
from ggvision.errors import GgvisionError, IpcError

if TYPE_CHECKING:
    from ggvision.core.mqtt import IotBridge

log = logging.getLogger(__name__)

MAX_SOCKET_PATH = 107

# Every operation of the Greengrass IPC model; those without a handler get a modeled
# ServiceError ("not supported"), never a hang.
KNOWN_OPERATIONS = frozenset(
    "aws.greengrass#" + n
    for n in [
        "AuthorizeClientDeviceAction",
        "CancelLocalDeployment",
        "CreateDebugPassword",
        "CreateLocalDeployment",
        "DeferComponentUpdate",
        "DeleteThingShadow",
        "GetClientDeviceAuthToken",
        "GetComponentDetails",
        "GetConfiguration",
        "GetLocalDeploymentStatus",
        "GetSecretValue",
        "GetThingShadow",
        "ListComponents",
        "ListLocalDeployments",
        "ListNamedShadowsForThing",
        "PauseComponent",
        "PublishToIoTCore",
        "PublishToTopic",
        "PutComponentMetric",
        "RestartComponent",
        "ResumeComponent",
        "SendConfigurationValidityReport",
        "StopComponent",
        "SubscribeToCertificateUpdates",
        "SubscribeToComponentUpdates",
        "SubscribeToConfigurationUpdate",
        "SubscribeToIoTCore",
        "SubscribeToIoTCoreConnectionStatus",
        "SubscribeToTopic",
        "SubscribeToValidateConfigurationUpdates",
        "UpdateConfiguration",
        "UpdateState",
        "UpdateThingShadow",
        "ValidateAuthorizationToken",
        "VerifyClientDeviceIdentity",
    ]
)

StateListener = Callable[[str, str], None]


class IpcCore:
    def __init__(
        self,
        socket_path: str | os.PathLike[str],
        *,
        admin_socket_path: str | os.PathLike[str] | None = None,
        iot: IotBridge | None = None,
        validation_timeout_s: float = 20.0,
    ) -> None:
        self.socket_path = Path(socket_path)
        if len(os.fsencode(self.socket_path)) > MAX_SOCKET_PATH:
            raise GgvisionError(
                f"IPC socket path is {len(os.fsencode(self.socket_path))} bytes; Unix sockets "
                f"allow {MAX_SOCKET_PATH}. Use a shorter root directory."
            )
        self.admin_socket_path = Path(admin_socket_path) if admin_socket_path else None
        self.iot = iot
        self.config = ConfigStore()
        self.pubsub = pubsub.PubSub()
        self.deployments = Deployments(self, validation_timeout_s)
        self.connections: set[Connection] = set()
        self.deferrals: dict[str, dict[str, Any]] = {}
        self.versions: dict[str, str] = {}
        self._tokens: dict[str, str] = {}
        self._token_of: dict[str, str] = {}
        self._access: dict[str, AccessControl] = {}
        self._defaults: dict[str, dict[str, Any]] = {}
        self._states: dict[str, str] = {}
        self._state_listeners: list[StateListener] = []
        self._ops: dict[str, Operation] = {
            op.name: op
            for module in (pubsub, config, lifecycle, mqttproxy)
            for op in module.OPERATIONS
        }
        self._server: asyncio.AbstractServer | None = None
        self._admin: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[None]] = set()

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
        for conn in list(self.connections):
            if conn.component == name:
                conn.close()

    def components(self) -> list[str]:
        return list(self._token_of)

    def token_of(self, name: str) -> str | None:
        return self._token_of.get(name)

    def component_for_token(self, token: str) -> str | None:
        return self._tokens.get(token) if token else None

    def defaults_of(self, name: str) -> dict[str, Any]:
        return dict(self._defaults.get(name, {}))

    def access(self, name: str) -> AccessControl:
        return self._access.get(name) or AccessControl(name, None)

    def update_component_configuration(self, name: str, configuration: Mapping[str, Any]) -> None:
        """Apply a (validated) new configuration: watchers fire, accessControl recompiles."""
        cfg = dict(configuration)
        self.config.set_component(name, cfg)
        self._access[name] = AccessControl(name, cfg.get("accessControl"))

    def authorize(
        self, component: str, destination: str, operation: str, resource: str | None
    ) -> None:
        if not self.access(component).allows(destination, operation, resource):
            raise IpcError(
                "UnauthorizedError",
                f"Principal {component} is not authorized to perform "
                f"{destination}:{operation} on resource {resource}",
            )

    # --- states ---------------------------------------------------------------------------------
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

    async def deploy_configuration(
        self, component_to_configuration: Mapping[str, Any]
    ) -> DeployResult:
        return await self.deployments.deploy(component_to_configuration)

    # --- server ---------------------------------------------------------------------------------
    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        _unlink_stale_socket(self.socket_path)
        self.socket_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        old_umask = os.umask(0o077)
        try:
            self._server = await loop.create_unix_server(
                lambda: Connection(self), path=str(self.socket_path)
            )
            # Components may run as other users on a device; the token is the guard there.
            os.chmod(self.socket_path, 0o600)
            if self.admin_socket_path is not None:
                _unlink_stale_socket(self.admin_socket_path)
                self._admin = await asyncio.start_unix_server(
                    lambda r, w: admin.serve(self, r, w), path=str(self.admin_socket_path)
                )
                os.chmod(self.admin_socket_path, 0o600)
        finally:
            os.umask(old_umask)
        if self.iot is not None:
            await self.iot.start()
        log.info(
            "IPC core listening on %s",
            self.socket_path,
            extra={"event": "core.start", "socket": str(self.socket_path)},
        )

    async def stop(self) -> None:
        for server in (self._server, self._admin):
            if server is not None:
                server.close()
        for conn in list(self.connections):
            conn.close()
        for server in (self._server, self._admin):
            if server is not None:
                with contextlib.suppress(Exception):
                    await server.wait_closed()
        self._server = self._admin = None
        for task in list(self._tasks):
            task.cancel()
        if self.iot is not None:
            await self.iot.stop()
        for path in (self.socket_path, self.admin_socket_path):
            if path is not None:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
        log.info("IPC core stopped", extra={"event": "core.stop"})

    # --- dispatch (rpc.Dispatcher) -----------------------------------------------------------
    def connection_opened(self, conn: Connection) -> None:
        self.connections.add(conn)

    def connection_closed(self, conn: Connection) -> None:
        self.connections.discard(conn)

    def dispatch(self, stream: Stream, payload: bytes) -> None:
        component = stream.conn.component
        assert component is not None
        op = self._ops.get(stream.operation)
        try:
            if op is None:
                if stream.operation in KNOWN_OPERATIONS:
                    raise IpcError(
                        "ServiceError",
                        f"Operation {stream.operation} is not supported by Greengrass",
                    )
                raise IpcError("ServiceError", f"Unknown operation {stream.operation}")
            try:
                request = json.loads(payload) if payload else {}
            except (ValueError, RecursionError) as exc:
                raise IpcError("ServiceError", "Request is not valid JSON") from exc
            if not isinstance(request, dict):
                raise IpcError("ServiceError", "Request must be a JSON object")
            result = op.handler(Call(self, stream, component, request))
        except IpcError as err:
            stream.send_error(err)
            return
        except Exception as exc:
            self._internal(stream, exc)
            return
        if inspect.isawaitable(result):
            task = asyncio.ensure_future(self._finish_async(op, stream, result))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        else:
            self._finish(op, stream, result)

    async def _finish_async(self, op: Operation, stream: Stream, pending: Any) -> None:
        try:
            result = await pending
        except IpcError as err:
            stream.send_error(err)
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._internal(stream, exc)
            return
        self._finish(op, stream, result)

    def _finish(self, op: Operation, stream: Stream, result: dict[str, Any] | Streaming) -> None:
        model = op.name + "Response"
        if isinstance(result, Streaming):
            stream.respond(model, result.response, terminate=False)
            if result.after is not None:
                result.after()
        else:
            stream.respond(model, result, terminate=True)

    @staticmethod
    def _internal(stream: Stream, exc: Exception) -> None:
        log.exception(
            "IPC handler failed",
            extra={"event": "ipc.handler_error", "operation": stream.operation},
        )
        stream.send_error(IpcError("ServiceError", f"{type(exc).__name__}: {exc}"))


def _unlink_stale_socket(path: Path) -> None:
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise GgvisionError(f"{path} exists and is not a socket; refusing to replace it")
    path.unlink()
