"""What one local client can make the core hold: the limits and the outbound budget.

The Nucleus is a JVM with the device to itself; this core is a Python process on a laptop or a
small board, so it bounds what a hostile or stuck client can pin:

* before authentication: the first message may be at most :attr:`Limits.max_connect_bytes` (a
  real CONNECT is ~140 bytes), and a connection that has not completed the handshake within
  :attr:`Limits.handshake_timeout_s` is dropped;
* each component may hold at most :attr:`Limits.connections_per_token` connections at once (one
  more gets a refused CONNECT_ACK, which the client raises as ``AccessDeniedError``);
* with ``profile="lite"`` (``ggvision core run --profile lite``), Greengrass nucleus lite's
  own limits as well, each crossed the way Lite answers it (:class:`LiteLimits`);
* bytes queued in the core for clients that do not read fast enough (what the kernel's socket
  buffer could not take) are kept within :attr:`Limits.outbound_per_component` for each
  component and :attr:`Limits.outbound_total` for all connections together. Over either, the
  connection with the most bytes queued is aborted (its queue freed at once) and logged with
  ``event: ipc.slow_consumer``. No reason can be sent to it: bytes queue in the core only while
  its socket has no room.

:class:`OutboundBudget` keeps the books: every connection reports its queued bytes after each
write and once its queue has drained (:meth:`OutboundBudget.update`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Final, Protocol

from ggvision.errors import ConfigError

log = logging.getLogger(__name__)

MIB: Final = 1024 * 1024


NUCLEUS: Final = "nucleus"
LITE: Final = "lite"
PROFILES: Final = (NUCLEUS, LITE)


@dataclass(frozen=True, slots=True)
class LiteLimits:
    """What AWS IoT Greengrass nucleus lite (the C Nucleus, ``aws-greengrass-lite``) holds at
    most, with its build's defaults, and how it answers a client that crosses each (read from
    its sources: ``modules/ggipcd/src/ipc_server.c``, ``ipc_subscriptions.c``,
    ``ipc_dispatch.c``, ``services/pubsub/*.c``, ``modules/ggpubsubd/src/bus_server.c``,
    ``modules/core-bus/include/ggl/core_bus/{client,server,constants}.h`` and the SDK's
    ``include/gg/ipc/limits.h``, ``include/gg/object.h``):

    * ``max_message_bytes`` (``GG_IPC_MAX_MSG_LEN``): a message whose length after its 12-byte
      prelude is over it closes the connection, nothing sent ("EventStream packet does not fit
      in configured IPC buffer size"); an answer or event the core would send over it cannot be
      encoded: an event is skipped ("Failed to send subscription response; skipping"), a
      response becomes a ``ServiceError`` with an empty message;
    * ``max_clients`` (``GGL_IPC_MAX_CLIENTS``): connections of all components together; one
      more is accepted and closed at once ("Closed new client ... due to max clients reached");
    * ``max_subscriptions`` (``GGL_COREBUS_CLIENT_MAX_SUBSCRIPTIONS``): open subscription
      streams of every kind, all clients together, and ``max_pubsub_subscriptions``
      (``GGL_COREBUS_MAX_CLIENTS - 1``): local ``SubscribeToTopic`` ones; one more is a
      ``ServiceError`` ("Failed to bind subscription." for SubscribeToTopic);
    * ``max_topic_bytes`` (``GGL_PUBSUB_MAX_TOPIC_LENGTH``): a local topic (filter) longer, in
      UTF-8 bytes, is a ``ServiceError`` ("Failed to publish the message." /
      "Failed to bind subscription."), after authorization;
    * ``max_json_bytes``: a request's JSON is decoded into an arena of
      ``GG_MAX_OBJECT_SUBOBJECTS`` (255) objects of 11 bytes (64-bit); a list of n items takes
      n objects, a map of n pairs n key-value slots of 21 bytes, nested ones add theirs; a
      request that does not fit is a ``ServiceError`` with an empty message;
    * operations it does not serve (anything but the ones in :data:`LITE_OPERATIONS`) are a
      ``ServiceError`` with an empty message ("Unhandled operation requested").
    """

    max_message_bytes: int = 10_000
    max_clients: int = 50
    max_subscriptions: int = 100
    max_pubsub_subscriptions: int = 99
    max_topic_bytes: int = 256
    max_json_bytes: int = 255 * 11


LITE_OPERATIONS: Final = frozenset(
    "aws.greengrass#" + n
    for n in (
        "PublishToTopic",
        "SubscribeToTopic",
        "PublishToIoTCore",
        "SubscribeToIoTCore",
        "GetConfiguration",
        "UpdateConfiguration",
        "SubscribeToConfigurationUpdate",
        "CreateLocalDeployment",
        "RestartComponent",
        "UpdateState",
        "ValidateAuthorizationToken",
    )
)

# Lite's SubscriptionResponse "bind" failures, by operation (services/*/subscribe_*.c).
LITE_BIND_FAILED: Final = {
    "aws.greengrass#SubscribeToTopic": "Failed to bind subscription.",
    "aws.greengrass#SubscribeToIoTCore": "Failed to bind the subscription.",
    "aws.greengrass#SubscribeToConfigurationUpdate": "Failed to subscribe to configuration update.",
}


def lite_json_bytes(value: object) -> int:
    """The bytes of Lite's decode arena ``value`` (a decoded JSON request) takes: 11 per list
    item, 21 per map pair, and the same for what they hold (the top value itself is free)."""
    total = 0
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, dict):
            total += 21 * len(v)
            stack.extend(v.values())
        elif isinstance(v, list):
            total += 11 * len(v)
            stack.extend(v)
    return total


@dataclass(frozen=True, slots=True)
class Limits:
    """The core's bounds on local clients (defaults: see README "Limits of the local core").

    ``profile``: whose limits the core enforces besides its own, chosen once at start:
    ``nucleus`` (the Java Nucleus: none more) or ``lite`` (:class:`LiteLimits`, with the errors
    Lite gives). :meth:`for_profile` builds either."""

    outbound_total: int = 256 * MIB
    outbound_per_component: int = 64 * MIB
    connections_per_token: int = 32
    handshake_timeout_s: float = 5.0
    max_connect_bytes: int = 16 * 1024
    profile: str = NUCLEUS
    lite: LiteLimits | None = None

    @classmethod
    def for_profile(cls, profile: str, **overrides: object) -> Limits:
        """The limits of ``profile`` (``nucleus`` or ``lite``), with ``overrides`` of the core's
        own bounds."""
        if profile not in PROFILES:
            raise ConfigError(f"unknown profile {profile!r}: one of {', '.join(PROFILES)}")
        lite = LiteLimits() if profile == LITE else None
        return cls(profile=profile, lite=lite, **overrides)  # type: ignore[arg-type]

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise ConfigError(f"unknown profile {self.profile!r}: one of {', '.join(PROFILES)}")
        if (self.profile == LITE) != (self.lite is not None):
            raise ConfigError("the lite profile needs its LiteLimits (use Limits.for_profile)")
        for name in ("outbound_total", "outbound_per_component", "connections_per_token"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1")
        if not self.handshake_timeout_s > 0:
            raise ConfigError("handshake_timeout_s must be positive")
        if self.max_connect_bytes < 256:  # a real CONNECT with a 32-character token is 137
            raise ConfigError("max_connect_bytes must be at least 256")


class Outbound(Protocol):
    """A connection as the budget sees it."""

    component: str | None
    queued: int  # the budget's record of its queued bytes (written by the budget only)

    def queued_now(self) -> int:
        """The bytes queued for it right now (its transport's write buffer)."""
        ...

    def cut_off(self) -> None:
        """Abort it: its queue is freed at once and it is written to no more."""
        ...


class OutboundBudget:
    """The books of bytes queued for slow readers: in total, per component, per connection.

    The record of a connection is exact after each of its writes and once its queue is empty;
    in between (a queue draining) it is an upper bound. Before cutting anyone off the budget
    re-reads every queue, so only real bytes count against a limit.
    """

    def __init__(self, total: int, per_component: int) -> None:
        self.total_limit = total
        self.component_limit = per_component
        self.total = 0
        self.cut_offs = 0
        self._by_component: dict[str, int] = {}
        self._queued: set[Outbound] = set()  # connections with a non-zero record

    def of(self, component: str) -> int:
        """Bytes recorded for ``component``'s connections."""
        return self._by_component.get(component, 0)

    def by_component(self) -> dict[str, int]:
        return dict(self._by_component)

    def update(self, conn: Outbound, size: int) -> None:
        """``conn`` now has ``size`` bytes queued; cut off whoever is too much if a limit broke."""
        grew = size > conn.queued
        self._set(conn, size)
        component = conn.component
        if grew and (
            self.total > self.total_limit
            or (component is not None and self.of(component) > self.component_limit)
        ):
            self._enforce(component)

    def forget(self, conn: Outbound) -> None:
        """``conn`` is gone (its queue went with it)."""
        self._set(conn, 0)

    def refresh(self) -> None:
        """Re-read every recorded queue (exact books)."""
        for conn in list(self._queued):
            self._set(conn, conn.queued_now())

    def _set(self, conn: Outbound, size: int) -> None:
        delta = size - conn.queued
        if not delta:
            return
        conn.queued = size
        if size:
            self._queued.add(conn)
        else:
            self._queued.discard(conn)
        self.total += delta
        if conn.component is not None:
            left = self._by_component.get(conn.component, 0) + delta
            if left:
                self._by_component[conn.component] = left
            else:
                self._by_component.pop(conn.component, None)

    def _enforce(self, component: str | None) -> None:
        self.refresh()
        if component is not None:
            while self.of(component) > self.component_limit:
                mine = [c for c in self._queued if c.component == component]
                if not self._cut(mine, "component", self.component_limit):
                    break
        while self.total > self.total_limit:
            if not self._cut(list(self._queued), "total", self.total_limit):
                break

    def _cut(self, candidates: list[Outbound], budget: str, limit: int) -> bool:
        """Abort the candidate with the most bytes queued (the one that reads least)."""
        if not candidates:
            return False
        victim = max(candidates, key=lambda c: c.queued)
        log.error(
            "IPC client is not reading: %d bytes queued for it, over the %s budget of %d "
            "bytes; dropping its connection",
            victim.queued,
            budget,
            limit,
            extra={
                "event": "ipc.slow_consumer",
                "component": victim.component,
                "queued": victim.queued,
                "budget": budget,
                "limit": limit,
                "queued_total": self.total,
            },
        )
        victim.cut_off()
        self.forget(victim)
        self.cut_offs += 1
        return True
