"""Local publish/subscribe (``aws.greengrass.ipc.pubsub``), with the Nucleus's topic semantics.

Topics split on ``/`` the Java way (trailing empty levels dropped). ``+`` matches one level (may be
empty in the middle); ``#`` matches one or more remaining levels, so ``a/#`` does not match ``a``;
a bare ``#`` matches everything. The event carries the published topic, not the filter. A
``binaryMessage`` that is not strict base64 is refused as the Nucleus refuses it: its RPC framework
cannot deserialize the request and answers a bare ``text/plain`` ``InternalServerError`` (no
modeled error), nothing is published.

:class:`PubSub` is the router (also for the operator's console, ``observe``);
:class:`PubSubAgent` serves the two IPC operations over it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ggvision.core.auth import PUBSUB
from ggvision.core.rpc import Stream
from ggvision.core.services import (
    Authorizer,
    Call,
    Operation,
    Streaming,
    authorize,
    check_blob,
    str_field,
)
from ggvision.errors import IpcError

log = logging.getLogger(__name__)

PUBLISH = "aws.greengrass#PublishToTopic"
SUBSCRIBE = "aws.greengrass#SubscribeToTopic"
EVENT_MODEL = "aws.greengrass#SubscriptionResponseMessage"
ALL = "RECEIVE_ALL_MESSAGES"
OTHERS = "RECEIVE_MESSAGES_FROM_OTHERS"


def split_topic(topic: str) -> list[str]:
    """Java ``String.split("/")``: trailing empty levels are dropped."""
    levels = topic.split("/")
    while len(levels) > 1 and levels[-1] == "":
        levels.pop()
    return levels


def topic_matches(filter_levels: list[str], topic_levels: list[str]) -> bool:
    last = len(filter_levels) - 1
    for i, f in enumerate(filter_levels):
        if f == "#" and i == last:
            return len(topic_levels) > i
        if i >= len(topic_levels):
            return False
        if f not in ("+", "#") and f != topic_levels[i]:
            return False
    return len(topic_levels) == len(filter_levels)


@dataclass(slots=True, eq=False)
class Subscription:
    component: str
    topic: str
    levels: list[str]
    exact: bool
    receive_mode: str
    stream: Stream


Observer = Callable[[str, str, dict[str, Any]], None]


class PubSub:
    def __init__(self) -> None:
        # Exact-topic subscriptions are indexed; wildcard ones are scanned.
        self._exact: dict[str, list[Subscription]] = {}
        self._wild: list[Subscription] = []
        self._observers: list[tuple[list[str], Observer]] = []
        self.delivered = 0

    def observe(self, topic_filter: str, observer: Observer) -> Callable[[], None]:
        """Call ``observer(publisher, topic, event)`` in the core's loop for each matching publish.

        For the operator's own console (``ggvision core run --watch``): not a component, so not
        subject to accessControl, and never counted as a delivery. Returns the remover.
        """
        entry = (split_topic(topic_filter), observer)
        self._observers.append(entry)
        return lambda: self._observers.remove(entry) if entry in self._observers else None

    def subscriptions(self) -> int:
        return sum(len(v) for v in self._exact.values()) + len(self._wild)

    def add(self, sub: Subscription) -> None:
        if sub.exact:
            self._exact.setdefault("/".join(sub.levels), []).append(sub)
        else:
            self._wild.append(sub)

    def remove(self, sub: Subscription) -> None:
        if sub.exact:
            key = "/".join(sub.levels)
            lst = self._exact.get(key)
            if lst and sub in lst:
                lst.remove(sub)
                if not lst:
                    del self._exact[key]
        elif sub in self._wild:
            self._wild.remove(sub)

    def publish(self, publisher: str, topic: str, event: dict[str, Any]) -> int:
        """Deliver ``event`` (the event body) to every matching subscription; returns the count."""
        levels = split_topic(topic)
        for filter_levels, observer in self._observers:
            if topic_matches(filter_levels, levels):
                try:
                    observer(publisher, topic, event)
                except Exception:  # boundary: a console bug never breaks delivery
                    log.exception("pubsub observer failed on %s", topic)
        targets = list(self._exact.get("/".join(levels), ()))
        if self._wild:
            targets += [s for s in self._wild if topic_matches(s.levels, levels)]
        if not targets:
            return 0
        payload = _event_json(event)
        n = 0
        for sub in targets:
            if sub.receive_mode == OTHERS and sub.component == publisher:
                continue
            sub.stream.send_event_bytes(EVENT_MODEL, payload)
            n += 1
        self.delivered += n
        return n


_quote = json.encoder.encode_basestring_ascii  # json.dumps's own string encoder (C)


def _event_json(event: dict[str, Any]) -> bytes:
    """``json.dumps(event).encode()``; a binary message's event (strings only) is put together
    directly, with the string encoder json.dumps uses, which comes out the same."""
    binary = event.get("binaryMessage")
    if len(event) == 1 and isinstance(binary, dict) and len(binary) == 2:
        message, context = binary.get("message"), binary.get("context")
        if isinstance(message, str) and isinstance(context, dict) and len(context) == 1:
            topic = context.get("topic")
            if isinstance(topic, str) and list(binary) == ["message", "context"]:
                return (
                    f'{{"binaryMessage": {{"message": {_quote(message)}, '
                    f'"context": {{"topic": {_quote(topic)}}}}}}}'
                ).encode()
    return json.dumps(event).encode()


def _has_wildcard(topic: str) -> bool:
    return "+" in topic or "#" in topic or "*" in topic


def _check_blob(request: dict[str, Any]) -> None:
    """A ``binaryMessage.message`` that is not strict base64 fails the Nucleus's
    deserialization, with its bare error (:func:`~ggvision.core.services.check_blob`)."""
    message = request.get("publishMessage")
    binary = message.get("binaryMessage") if isinstance(message, dict) else None
    check_blob(binary.get("message") if isinstance(binary, dict) else None)


class PubSubAgent:
    """PublishToTopic and SubscribeToTopic, authorized under ``aws.greengrass.ipc.pubsub``."""

    def __init__(
        self, auth: Authorizer, router: PubSub, *, max_topic_bytes: int | None = None
    ) -> None:
        """``max_topic_bytes``: the lite profile's bound on a topic (filter), answered as Lite
        answers it (:class:`ggvision.core.limits.LiteLimits`); None: the Nucleus's (none)."""
        self.auth = auth
        self.router = router
        self.max_topic_bytes = max_topic_bytes

    def _check_length(self, topic: str | None, message: str) -> None:
        limit = self.max_topic_bytes
        if limit is not None and topic is not None and len(topic.encode()) > limit:
            raise IpcError("ServiceError", message)

    def operations(self) -> list[Operation]:
        return [
            Operation(PUBLISH, self.publish_to_topic),
            Operation(SUBSCRIBE, self.subscribe_to_topic, streaming=True, event_model=EVENT_MODEL),
        ]

    def publish_to_topic(self, call: Call) -> dict[str, Any]:
        _check_blob(call.request)
        topic = str_field(call, "topic")
        authorize(self.auth, call.component, PUBSUB, PUBLISH, topic)
        self._check_length(topic, "Failed to publish the message.")
        if topic is None:
            raise IpcError("InvalidArgumentsError", "Publish topic must not be null")
        if _has_wildcard(topic):
            raise IpcError("InvalidArgumentsError", "Publish topic must not contain a wildcard.")
        message = call.request.get("publishMessage")
        if not isinstance(message, dict):
            raise IpcError("ServiceError", "publishMessage is required")
        json_msg = message.get("jsonMessage")
        binary_msg = message.get("binaryMessage")
        if (json_msg is None) == (binary_msg is None):
            raise IpcError(
                "InvalidArgumentsError",
                "publishMessage needs exactly one of jsonMessage, binaryMessage",
            )
        context = {"topic": topic}
        event: dict[str, Any]
        if json_msg is not None:
            if not isinstance(json_msg, dict):
                raise IpcError("InvalidArgumentsError", "jsonMessage must be an object")
            event = {"jsonMessage": {"message": json_msg.get("message"), "context": context}}
        else:
            if not isinstance(binary_msg, dict) or not isinstance(
                binary_msg.get("message", ""), str
            ):
                raise IpcError("InvalidArgumentsError", "binaryMessage.message must be base64")
            event = {
                "binaryMessage": {"message": binary_msg.get("message", ""), "context": context}
            }
        self.router.publish(call.component, topic, event)
        return {}

    def subscribe_to_topic(self, call: Call) -> Streaming:
        topic = str_field(call, "topic")
        authorize(self.auth, call.component, PUBSUB, SUBSCRIBE, topic)
        self._check_length(topic, "Failed to bind subscription.")
        if not topic:
            raise IpcError("InvalidArgumentsError", "Subscribe topic must not be empty")
        mode = call.request.get("receiveMode")
        if mode is None:
            mode = OTHERS if _has_wildcard(topic) else ALL
        elif mode not in (ALL, OTHERS):
            raise IpcError("InvalidArgumentsError", f"Unknown receive mode {mode}")
        levels = split_topic(topic)
        sub = Subscription(
            component=call.component,
            topic=topic,
            levels=levels,
            exact=not any(lv in ("+", "#") for lv in levels),
            receive_mode=str(mode),
            stream=call.stream,
        )
        router = self.router

        def register() -> None:
            if call.stream.is_open:
                router.add(sub)
                call.stream.on_close(lambda: router.remove(sub))

        return Streaming({}, register)
