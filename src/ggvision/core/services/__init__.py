"""IPC services: one module per Greengrass service, each a table operation -> handler."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ggvision.core.rpc import Stream
    from ggvision.core.server import IpcCore


@dataclass(slots=True)
class Call:
    """One operation invocation."""

    core: IpcCore
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


def str_field(call: Call, key: str) -> str | None:
    """A request field that must be a string when present (InvalidArgumentsError otherwise)."""
    from ggvision.errors import IpcError

    value = call.request.get(key)
    if value is None or isinstance(value, str):
        return value
    raise IpcError("InvalidArgumentsError", f"{key} must be a string")
