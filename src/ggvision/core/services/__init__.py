"""IPC services, the Nucleus's way: one agent per Greengrass IPC service (pub/sub, config store,
lifecycle, greengrass-cli, MQTT proxy), each a class given only what it needs (an
:class:`Authorizer`, a router, a store) and declaring its own operations; each authorizes its own
calls. The IPC server runs whatever operations the agents it is given declare and knows none of
them by name.

This module holds what every agent shares: :class:`Call`, :class:`Streaming`, :class:`Operation`,
:class:`Service`, :class:`Authorizer`. It imports no agent.
"""

from __future__ import annotations

import binascii
import unicodedata
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ggvision.core.rpc import Stream
from ggvision.errors import IpcError, UnmodeledIpcError


@dataclass(slots=True)
class Call:
    """One operation invocation: the stream it came on, the caller (from its token), the request."""

    stream: Stream
    component: str
    request: dict[str, Any]


@dataclass(slots=True)
class Streaming:
    """What a streaming handler returns: the initial response and what to do once it is sent.

    ``after`` runs right after the response is written, so no event can precede it on the wire.
    """

    response: dict[str, Any] = field(default_factory=dict)
    after: Callable[[], None] | None = None


Reply = dict[str, Any] | Streaming
Handler = Callable[[Call], Reply | Awaitable[Reply]]


@dataclass(frozen=True, slots=True)
class Operation:
    name: str  # e.g. aws.greengrass#PublishToTopic
    handler: Handler
    streaming: bool = False
    event_model: str | None = None


class Service(Protocol):
    """One IPC service's agent, as the IPC server sees it."""

    def operations(self) -> Iterable[Operation]:
        """The operations this agent serves, each with its handler."""
        ...


class Authorizer(Protocol):
    """The component's ``accessControl``, as an agent asks it."""

    def allows(
        self, component: str, destination: str, operation: str, resource: str | None
    ) -> bool: ...


def is_blank(resource: str) -> bool:
    """The Nucleus's ``Utils.isEmpty``: empty, or only Unicode space separators
    (``Character.isSpaceChar``)."""
    return all(unicodedata.category(c) in ("Zs", "Zl", "Zp") for c in resource)


def check_blob(value: object) -> None:
    """A request's blob (``binaryMessage.message``, ``payload``) must be strict base64: the
    Nucleus deserializes the request before anything else (authorization included), and its
    RPC framework answers one that does not with the bare ``InternalServerError``."""
    if isinstance(value, str):
        try:
            binascii.a2b_base64(value, strict_mode=True)
        except (binascii.Error, ValueError) as exc:
            raise UnmodeledIpcError("a blob is not valid base64") from exc


def authorize(
    auth: Authorizer, component: str, destination: str, operation: str, resource: str | None
) -> None:
    """UnauthorizedError (the Nucleus's message) unless ``component`` may do this. A blank
    resource (``" "``) is refused as the Nucleus's ``AuthorizationModule.isPresent`` refuses it,
    with its message."""
    if resource is not None and is_blank(resource):
        raise IpcError("UnauthorizedError", "Resource cannot be empty")
    if not auth.allows(component, destination, operation, resource):
        raise IpcError(
            "UnauthorizedError",
            f"Principal {component} is not authorized to perform "
            f"{destination}:{operation} on resource {resource}",
        )


def str_field(call: Call, key: str) -> str | None:
    """A request field that must be a string when present (InvalidArgumentsError otherwise)."""
    value = call.request.get(key)
    if value is None or isinstance(value, str):
        return value
    raise IpcError("InvalidArgumentsError", f"{key} must be a string")
