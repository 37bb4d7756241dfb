"""The one exception tree of ggvision. Raise the most specific class, chained with ``from exc``."""

from __future__ import annotations

from typing import Any


class GgvisionError(Exception):
    """Base of every error raised on purpose by ggvision."""


class FrameError(GgvisionError):
    """An event-stream frame could not be encoded or decoded (framing lost: drop the connection)."""


class ProtocolError(GgvisionError):
    """A peer broke the event-stream RPC rules (handshake, stream ids, message types)."""


class IpcError(GgvisionError):
    """A modeled Greengrass IPC error, sent to the client as ``aws.greengrass#<name>``.

    ``fields`` are the extra modeled fields of the error shape (e.g. ``resourceType`` for
    ``ResourceNotFoundError``, ``context`` for ``ServiceError``).
    """

    def __init__(self, name: str, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.name = name
        self.message = message
        self.fields = fields


class UnmodeledIpcError(IpcError):
    """An error the Nucleus's RPC framework answers with no model at all: an ``ApplicationError``
    whose ``text/plain`` payload is ``InternalServerError`` (what its generic handler sends when a
    request does not deserialize into its shape, e.g. a blob that is not base64)."""

    def __init__(self, message: str) -> None:
        super().__init__("InternalServerError", message)


class RecipeError(GgvisionError):
    """A recipe is malformed or cannot be resolved (bad keys, unknown references, cycles)."""


class ConfigError(GgvisionError):
    """A configuration value is invalid."""


class AdminError(GgvisionError):
    """A request to a running core's admin socket failed."""
