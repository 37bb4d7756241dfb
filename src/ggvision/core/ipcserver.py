"""The IPC socket server: listens on the Unix socket the ``awsiotsdk`` client connects to, keeps
its connections, and runs each operation a client opens a stream with.

It is the :class:`ggvision.core.rpc.Dispatcher` of its connections. It knows no IPC service by
name: the agents it is given (:class:`ggvision.core.services.Service`) declare their operations,
and it only resolves tokens (through the function it was made with), decodes the request, calls
the handler, and writes the reply or the modeled error back on the stream. It owns the bounds of
:mod:`ggvision.core.limits`: the outbound budget its connections report to, and the count of
each component's connections (one over ``connections_per_token`` is refused). Under the
``lite`` profile it also enforces Greengrass nucleus lite's bounds on connections,
subscriptions, request JSON and operations, with Lite's answers
(:class:`ggvision.core.limits.LiteLimits`); the message size is the connection's.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ggvision.core.limits import (
    LITE_BIND_FAILED,
    LITE_OPERATIONS,
    Limits,
    OutboundBudget,
    lite_json_bytes,
)
from ggvision.core.rpc import Connection, Stream
from ggvision.core.services import Call, Operation, Service, Streaming
from ggvision.core.unixsocket import check_socket_path, owner_only_socket
from ggvision.errors import GgvisionError, IpcError, UnmodeledIpcError

log = logging.getLogger(__name__)

PUBSUB_SUBSCRIBE = "aws.greengrass#SubscribeToTopic"

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


class IpcServer:
    """One listening socket, its connections, and the operation table of its agents."""

    def __init__(
        self,
        socket_path: str | os.PathLike[str],
        authenticate: Callable[[str], str | None],
        limits: Limits | None = None,
    ) -> None:
        self.socket_path = Path(socket_path)
        check_socket_path(self.socket_path)
        self._authenticate = authenticate
        self.limits = limits = limits or Limits()
        self.outbound = OutboundBudget(limits.outbound_total, limits.outbound_per_component)
        self.connections: set[Connection] = set()
        self._admitted: dict[str, int] = {}  # component -> its authenticated connections
        self.subscriptions = 0  # open subscription streams (the lite profile counts them)
        self.pubsub_subscriptions = 0  # of which SubscribeToTopic
        self._ops: dict[str, Operation] = {}
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def serve(self, service: Service) -> None:
        """Run the operations ``service`` declares (each name once across all services)."""
        for op in service.operations():
            if op.name in self._ops:
                raise GgvisionError(f"operation {op.name} is served twice")
            self._ops[op.name] = op

    def close_component(self, component: str) -> None:
        """Close every connection of ``component`` (it was unregistered)."""
        for conn in list(self.connections):
            if conn.component == component:
                conn.close()

    # --- listening ------------------------------------------------------------------------
    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        with owner_only_socket(self.socket_path):
            self._server = await loop.create_unix_server(
                lambda: Connection(self, self.outbound, self.limits), path=str(self.socket_path)
            )

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            conn.close()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
        self._server = None
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()

    # --- rpc.Dispatcher -------------------------------------------------------------------
    def component_for_token(self, token: str) -> str | None:
        return self._authenticate(token)

    def admit(self, component: str) -> bool:
        n = self._admitted.get(component, 0)
        if n >= self.limits.connections_per_token:
            log.warning(
                "IPC connection refused: %s already has %d connections, the limit per token",
                component,
                n,
                extra={
                    "event": "ipc.connection_limit",
                    "component": component,
                    "limit": self.limits.connections_per_token,
                },
            )
            return False
        self._admitted[component] = n + 1
        return True

    def connection_opened(self, conn: Connection) -> None:
        lite = self.limits.lite
        if lite is not None and len(self.connections) >= lite.max_clients:
            # Lite accepts and closes at once: the client sees its connection closed.
            log.warning(
                "IPC connection closed: %d clients connected, the lite profile's maximum",
                len(self.connections),
                extra={"event": "ipc.lite_max_clients", "limit": lite.max_clients},
            )
            conn.cut_off()
            return
        self.connections.add(conn)

    def connection_closed(self, conn: Connection) -> None:
        self.connections.discard(conn)
        if conn.component is not None:
            left = self._admitted.get(conn.component, 0) - 1
            if left > 0:
                self._admitted[conn.component] = left
            else:
                self._admitted.pop(conn.component, None)

    def dispatch(self, stream: Stream, payload: bytes) -> None:
        component = stream.conn.component
        assert component is not None
        op = self._ops.get(stream.operation)
        lite = self.limits.lite
        try:
            if lite is not None and stream.operation not in LITE_OPERATIONS:
                # Lite: "Unhandled operation requested" -> a ServiceError without a message.
                raise IpcError("ServiceError", "")
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
                if lite:
                    raise IpcError("ServiceError", "") from exc
                # The Nucleus's RPC framework cannot deserialize it: its bare error.
                raise UnmodeledIpcError("Request is not valid JSON") from exc
            if not isinstance(request, dict):
                if lite:
                    raise IpcError("ServiceError", "")
                raise UnmodeledIpcError("Request must be a JSON object")
            if lite is not None and lite_json_bytes(request) > lite.max_json_bytes:
                log.warning(
                    "IPC request refused: its JSON does not fit the lite profile's decode arena",
                    extra={"event": "ipc.lite_json_too_big", "operation": stream.operation},
                )
                raise IpcError("ServiceError", "")
            result = op.handler(Call(stream, component, request))
        except IpcError as err:
            stream.send_error(err)
            return
        except Exception as exc:
            self._internal(stream, exc)
            return
        if type(result) is not dict and inspect.isawaitable(result):
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
            if self._over_subscriptions(op):
                stream.send_error(IpcError("ServiceError", LITE_BIND_FAILED.get(op.name, "")))
            else:
                stream.respond(model, result.response, terminate=False)
                self._count_subscription(op, stream)
            if result.after is not None:
                result.after()  # a closed stream: it registers nothing (or undoes its work)
        else:
            stream.respond(model, result, terminate=True)

    def _over_subscriptions(self, op: Operation) -> bool:
        """Lite: all subscription streams share one table, local topics another."""
        lite = self.limits.lite
        if lite is None:
            return False
        full = self.subscriptions >= lite.max_subscriptions or (
            op.name == PUBSUB_SUBSCRIBE
            and self.pubsub_subscriptions >= lite.max_pubsub_subscriptions
        )
        if full:
            log.warning(
                "IPC subscription refused: the lite profile's subscription tables are full",
                extra={
                    "event": "ipc.lite_max_subscriptions",
                    "operation": op.name,
                    "subscriptions": self.subscriptions,
                    "pubsub_subscriptions": self.pubsub_subscriptions,
                },
            )
        return full

    def _count_subscription(self, op: Operation, stream: Stream) -> None:
        if self.limits.lite is None or not stream.is_open:
            return
        local = op.name == PUBSUB_SUBSCRIBE
        self.subscriptions += 1
        self.pubsub_subscriptions += local

        def released() -> None:
            self.subscriptions -= 1
            self.pubsub_subscriptions -= local

        stream.on_close(released)

    @staticmethod
    def _internal(stream: Stream, exc: Exception) -> None:
        log.exception(
            "IPC handler failed",
            extra={"event": "ipc.handler_error", "operation": stream.operation},
        )
        stream.send_error(IpcError("ServiceError", f"{type(exc).__name__}: {exc}"))
