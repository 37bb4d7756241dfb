"""The thin pub/sub and config wrapper every component uses, over Greengrass IPC.

Components depend on :class:`Bus`; :class:`IpcBus` implements it with the ``awsiotsdk`` client
(imported only when a bus is created, so nothing happens at import time). When the core goes
away (a restart), :class:`IpcBus` reconnects with back-off, subscribes again and reports its last
state again; calls made while it is disconnected fail with :class:`BusError`.

Callbacks: handlers run on the bus's own small thread pool, so a slow handler (a configuration
reload, a printed line) never stalls the connection.  ``subscribe(..., inline=True)`` runs the
handler directly on the SDK's networking thread instead, one thread hand-off less per message
(measured 0.05-0.1 ms per hop on a 2-vCPU VM): only for handlers that decode, validate and hand
off — they must never block and never make a synchronous IPC call (that would deadlock the
networking thread); asynchronous publishes are fine.  Handlers never raise into the SDK.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Final, Protocol

from ggvision.errors import GgvisionError

log = logging.getLogger(__name__)

MessageHandler = Callable[[str, bytes | dict[str, Any]], None]
ConfigHandler = Callable[[list[str]], None]
# (topic, payload) of a message from AWS IoT Core.
IotHandler = Callable[[str, bytes], None]
# Returns (accepted, message) for a proposed configuration of a deployment.
Validator = Callable[[dict[str, Any]], tuple[bool, str]]
# (deploymentId, isGgcRestarting) of a PreComponentUpdateEvent -> (recheckAfterMs, message):
# 0 lets the update go ahead now, more defers it that long (then the core asks again).
UpdateDecider = Callable[[str, bool], tuple[int, str]]
# deploymentId of a PostComponentUpdateEvent.
UpdateDone = Callable[[str], None]


# One compact encoder for every JSON message: json.dumps with arguments builds a new one per call.
_JSON = json.JSONEncoder(separators=(",", ":"))

# Greengrass nucleus lite's largest IPC message (GG_IPC_MAX_MSG_LEN; the local core's lite
# profile keeps to the same figure: ggvision.core.limits.LiteLimits).
LITE_MAX_MESSAGE_BYTES: Final = 10_000


def message_limit(bus: object) -> int | None:
    """The largest IPC message ``bus``'s Nucleus takes, when it is known to have one (Greengrass
    nucleus lite, recognized by its answer to SubscribeToValidateConfigurationUpdates; see
    :meth:`IpcBus.subscribe_validation`); None: no limit a component must plan for."""
    limit = getattr(bus, "max_message_bytes", None)
    return limit if isinstance(limit, int) else None


class BusError(GgvisionError):
    """An IPC call failed (the message names the modeled error when there is one)."""


class Subscription(Protocol):
    def close(self) -> None: ...


class Bus(Protocol):
    def publish_json(self, topic: str, obj: dict[str, Any]) -> Future[Any]: ...
    def subscribe(
        self, topic: str, handler: MessageHandler, *, inline: bool = False
    ) -> Subscription: ...
    def get_configuration(
        self, key_path: list[str] | None = None, component: str | None = None
    ) -> dict[str, Any]: ...
    def subscribe_configuration(self, handler: ConfigHandler) -> Subscription: ...
    def subscribe_validation(self, validator: Validator) -> Subscription: ...
    def subscribe_component_updates(
        self, decide: UpdateDecider, on_done: UpdateDone | None = None
    ) -> Subscription: ...
    def update_state(self, state: str) -> None: ...
    def publish_iot(self, topic: str, payload: bytes, qos: int = 1) -> Future[Any]: ...
    def publish_bytes(self, topic: str, data: bytes) -> Future[Any]: ...
    def update_configuration(self, key_path: list[str], value: dict[str, Any]) -> None: ...
    def subscribe_iot(self, topic: str, handler: IotHandler, qos: int = 1) -> Subscription: ...
    def close(self) -> None: ...


def _err(exc: BaseException) -> BusError:
    name = type(exc).__name__
    message = getattr(exc, "message", None) or str(exc)
    return BusError(f"{name}: {message}")


class IpcBus:
    """:class:`Bus` over ``GreengrassCoreIPCClientV2`` (env: the Nucleus variables)."""

    def __init__(
        self,
        timeout_s: float = 10.0,
        reconnect_initial_s: float = 0.2,
        reconnect_max_s: float = 5.0,
    ) -> None:
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._backoff = (reconnect_initial_s, reconnect_max_s)
        self._streams: list[_Stream] = []  # opened again on the new connection after a reconnect
        self._state: str | None = None  # reported again after a reconnect
        self.max_message_bytes: int | None = None  # see message_limit()
        self._closed = False
        self._reconnecting = False
        self.reconnects = 0
        # Stream callbacks: the SDK calls them on its networking thread (executor=None); all but
        # the inline ones are passed on to this pool (the SDK's own default is such a pool too).
        self._handlers = ThreadPoolExecutor(max_workers=4, thread_name_prefix="ipc-handler")
        try:
            self._client = self._connect()
        except KeyError as exc:
            raise BusError(
                f"not running as a Greengrass component: environment variable {exc} is missing "
                "(start it with `ggvision core run` or `ggvision core exec`)"
            ) from exc
        except BusError:
            raise
        except Exception as exc:
            raise _err(exc) from exc

    # --- connection and reconnection -----------------------------------------------------------
    def _connect(self) -> Any:
        """A V2 client on a connection whose loss starts :meth:`_reconnect_loop`."""
        try:
            from awsiot.eventstreamrpc import LifecycleHandler
            from awsiot.greengrasscoreipc import connect
            from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2
        except ImportError as exc:  # pragma: no cover - awsiotsdk is a core dependency
            raise BusError("awsiotsdk is not installed") from exc
        bus = self

        class _Lifecycle(LifecycleHandler):  # type: ignore[misc]
            def on_disconnect(self, reason: Exception | None) -> None:
                bus._lost(reason)

        return GreengrassCoreIPCClientV2(
            client=connect(lifecycle_handler=_Lifecycle(), timeout=self.timeout_s), executor=None
        )

    def _lost(self, reason: Exception | None) -> None:
        """The connection to the core is gone (its thread): reconnect in the background."""
        with self._lock:
            if self._closed or self._reconnecting:
                return
            self._reconnecting = True
        log.warning(
            "lost the IPC connection (%s); reconnecting", reason, extra={"event": "bus.lost"}
        )
        threading.Thread(target=self._reconnect_loop, name="ipc-reconnect", daemon=True).start()

    def _reconnect_loop(self) -> None:
        delay, maximum = self._backoff
        while not self._closed:
            time.sleep(delay)
            try:
                client = self._connect()
            except Exception as exc:
                log.info(
                    "IPC reconnect failed (%s); next try in %.1f s",
                    exc,
                    min(delay * 2, maximum),
                    extra={"event": "bus.reconnect_failed"},
                )
                delay = min(delay * 2, maximum)
                continue
            old, self._client = self._client, client
            with contextlib.suppress(Exception):
                old.close(executor_wait=False)
            with self._lock:
                streams = list(self._streams)
            for stream in streams:
                stream.reopen(client)
            if self._state is not None:
                with contextlib.suppress(Exception):
                    client.update_state(state=self._state)
            self.reconnects += 1
            log.info("IPC connection restored", extra={"event": "bus.reconnected"})
            break
        with self._lock:
            self._reconnecting = False

    def _stream(self, what: str, open_: Callable[[Any], Any]) -> Subscription:
        stream = _Stream(self, what, open_)
        try:
            stream.operation = open_(self._client)
        except Exception as exc:
            raise _err(exc) from exc
        with self._lock:
            self._streams.append(stream)
        return stream

    # --- pub/sub ------------------------------------------------------------------------------
    def publish_json(self, topic: str, obj: dict[str, Any]) -> Future[Any]:
        """Publish without blocking; the returned future fails with the modeled error."""
        return self.publish_bytes(topic, _JSON.encode(obj).encode())

    def publish_bytes(self, topic: str, data: bytes) -> Future[Any]:
        """Publish raw bytes (e.g. JSON already serialized) without blocking: one
        PublishToTopic, its future not waited for (it fails with the modeled error)."""
        binary, message = _message_classes()
        msg = message(binary_message=binary(message=data))
        fut: Future[Any] = self._client.publish_to_topic_async(topic=topic, publish_message=msg)
        return fut

    def _dispatch(self, run: Callable[[Any], None], inline: bool) -> Callable[[Any], None]:
        """The SDK's callback for ``run``: call it here (inline) or on the handler pool."""
        if inline:
            return run

        def submit(event: Any) -> None:
            try:
                self._handlers.submit(run, event)
            except RuntimeError:  # the pool is shut down: the bus is closing
                log.debug("event after close dropped", extra={"event": "bus.closed"})

        return submit

    def subscribe(
        self, topic: str, handler: MessageHandler, *, inline: bool = False
    ) -> Subscription:
        def on_event(event: Any) -> None:
            try:
                if event.binary_message is not None:
                    handler(event.binary_message.context.topic, event.binary_message.message)
                elif event.json_message is not None:
                    handler(event.json_message.context.topic, event.json_message.message)
            except Exception:  # boundary: never raise into the SDK's threads
                log.exception(
                    "message handler failed", extra={"event": "bus.handler_error", "topic": topic}
                )

        callback = self._dispatch(on_event, inline)

        def open_(client: Any) -> Any:
            _, operation = client.subscribe_to_topic(
                topic=topic,
                on_stream_event=callback,
                on_stream_error=lambda e: _log_stream_error(topic, e),
            )
            return operation

        return self._stream(topic, open_)

    # --- configuration ----------------------------------------------------------------------------
    def get_configuration(
        self, key_path: list[str] | None = None, component: str | None = None
    ) -> dict[str, Any]:
        try:
            resp = self._client.get_configuration(component_name=component, key_path=key_path or [])
        except Exception as exc:
            raise _err(exc) from exc
        value: dict[str, Any] = resp.value or {}
        return value

    def update_configuration(self, key_path: list[str], value: dict[str, Any]) -> None:
        """Merge ``value`` into this component's configuration at ``key_path`` (blocking)."""
        import datetime

        try:
            self._client.update_configuration(
                key_path=key_path,
                timestamp=datetime.datetime.now(datetime.UTC),
                value_to_merge=value,
            )
        except Exception as exc:
            raise _err(exc) from exc

    def subscribe_configuration(self, handler: ConfigHandler) -> Subscription:
        def on_event(event: Any) -> None:
            try:
                handler(list(event.configuration_update_event.key_path or []))
            except Exception:
                log.exception("configuration handler failed", extra={"event": "bus.handler_error"})

        callback = self._dispatch(on_event, inline=False)

        def open_(client: Any) -> Any:
            _, operation = client.subscribe_to_configuration_update(
                key_path=[],
                on_stream_event=callback,
                on_stream_error=lambda e: _log_stream_error("configuration", e),
            )
            return operation

        return self._stream("configuration", open_)

    def subscribe_validation(self, validator: Validator) -> Subscription:
        from awsiot.greengrasscoreipc.model import ConfigurationValidityReport

        def answer(event: Any) -> None:
            e = event.validate_configuration_update_event
            try:
                accepted, message = validator(dict(e.configuration or {}))
            except Exception as exc:  # a validator bug rejects rather than crashes
                log.exception("configuration validator failed")
                accepted, message = False, f"validator failed: {exc}"
            report = ConfigurationValidityReport(
                status="ACCEPTED" if accepted else "REJECTED",
                deployment_id=e.deployment_id,
                message=message or None,
            )
            try:
                self._client.send_configuration_validity_report(
                    configuration_validity_report=report
                )
            except Exception:
                log.exception(
                    "could not send the validity report",
                    extra={"event": "bus.validity_report_failed"},
                )

        # Answering is a blocking IPC call: on the handler pool, never the networking thread.
        callback = self._dispatch(answer, inline=False)

        def open_(client: Any) -> Any:
            _, operation = client.subscribe_to_validate_configuration_updates(
                on_stream_event=callback,
                on_stream_error=lambda e: _log_stream_error("validation", e),
            )
            return operation

        # Greengrass nucleus lite serves no SubscribeToValidateConfigurationUpdates: it
        # answers a ServiceError without a message. Updates then apply unvalidated; the
        # component still checks each one when it arrives (and keeps its configuration).
        subscription = self._stream_or_unserved(
            "validation",
            open_,
            "bus.validation_unserved",
            "this Nucleus does not validate configuration updates "
            "(SubscribeToValidateConfigurationUpdates: a bare ServiceError, as Greengrass "
            "nucleus lite answers); updates are checked only as they apply, and messages "
            "are kept within Lite's %d bytes",
            LITE_MAX_MESSAGE_BYTES,
        )
        if isinstance(subscription, _Unserved):
            self.max_message_bytes = LITE_MAX_MESSAGE_BYTES
        return subscription

    def subscribe_component_updates(
        self, decide: UpdateDecider, on_done: UpdateDone | None = None
    ) -> Subscription:
        """SubscribeToComponentUpdates: each PreComponentUpdateEvent is answered with
        DeferComponentUpdate(recheckAfterMs, message) from ``decide`` (``0``: go ahead; a
        failing ``decide`` answers 0, so a bug never blocks deployments); ``on_done`` hears of
        each PostComponentUpdateEvent. Both on the handler pool."""

        def on_event(event: Any) -> None:
            pre, post = event.pre_update_event, event.post_update_event
            if pre is not None:
                deployment_id = str(pre.deployment_id)
                try:
                    recheck_ms, message = decide(deployment_id, bool(pre.is_ggc_restarting))
                except Exception as exc:  # boundary: a decider bug lets the update go ahead
                    log.exception("component update decider failed")
                    recheck_ms, message = 0, f"decider failed: {exc}"
                try:
                    self._client.defer_component_update(
                        deployment_id=deployment_id,
                        message=message or None,
                        recheck_after_ms=max(0, int(recheck_ms)),
                    )
                except Exception as exc:  # too late (the core stopped waiting), or no core
                    log.warning(
                        "could not answer the update of deployment %s: %s",
                        deployment_id,
                        _err(exc),
                        extra={"event": "bus.defer_failed"},
                    )
            if post is not None and on_done is not None:
                try:
                    on_done(str(post.deployment_id))
                except Exception:
                    log.exception("component update handler failed")

        # Answering is a blocking IPC call: on the handler pool, never the networking thread.
        callback = self._dispatch(on_event, inline=False)

        def open_(client: Any) -> Any:
            _, operation = client.subscribe_to_component_updates(
                on_stream_event=callback,
                on_stream_error=lambda e: _log_stream_error("component updates", e),
            )
            return operation

        # Greengrass nucleus lite serves no SubscribeToComponentUpdates (a bare
        # ServiceError): it never notifies before an update, so there is nothing to defer.
        return self._stream_or_unserved(
            "component updates",
            open_,
            "bus.component_updates_unserved",
            "this Nucleus does not notify components of updates (SubscribeToComponentUpdates:"
            " a bare ServiceError, as Greengrass nucleus lite answers); a deployment may "
            "restart this component while requests are in flight",
        )

    def _stream_or_unserved(
        self, what: str, open_: Callable[[Any], Any], event: str, warning: str, *args: object
    ) -> Subscription:
        """``_stream(what, open_)``; where this Nucleus does not serve the operation (a bare
        ServiceError, as Greengrass nucleus lite answers), logs ``warning`` (event ``event``)
        and hands back a subscription that holds nothing."""
        try:
            return self._stream(what, open_)
        except BusError as exc:
            if not _unserved(exc):
                raise
            log.warning(warning, *args, extra={"event": event})
            return _Unserved()

    # --- lifecycle / IoT Core -------------------------------------------------------------------
    def update_state(self, state: str) -> None:
        self._state = state
        try:
            self._client.update_state(state=state)
        except Exception as exc:
            raise _err(exc) from exc

    def publish_iot(self, topic: str, payload: bytes, qos: int = 1) -> Future[Any]:
        fut: Future[Any] = self._client.publish_to_iot_core_async(
            topic_name=topic, qos=str(qos), payload=payload
        )
        return fut

    def subscribe_iot(self, topic: str, handler: IotHandler, qos: int = 1) -> Subscription:
        """SubscribeToIoTCore: ``handler(topic, payload)`` on the bus's handler pool."""

        def on_event(event: Any) -> None:
            try:
                msg = event.message
                if msg is not None:
                    handler(str(msg.topic_name), bytes(msg.payload or b""))
            except Exception:  # boundary: never raise into the SDK's threads
                log.exception(
                    "IoT Core handler failed", extra={"event": "bus.handler_error", "topic": topic}
                )

        callback = self._dispatch(on_event, inline=False)

        def open_(client: Any) -> Any:
            _, operation = client.subscribe_to_iot_core(
                topic_name=topic,
                qos=str(qos),
                on_stream_event=callback,
                on_stream_error=lambda e: _log_stream_error(topic, e),
            )
            return operation

        return self._stream(f"IoT Core {topic}", open_)

    def close(self) -> None:
        with self._lock:
            self._closed = True
        try:
            self._client.close()
        except Exception:
            log.debug("closing the IPC client failed", exc_info=True)
        # wait for running handlers, unless this is one of them (it would wait for itself)
        in_handler = threading.current_thread().name.startswith("ipc-handler")
        self._handlers.shutdown(wait=not in_handler)


@functools.cache
def _message_classes() -> tuple[Any, Any]:
    """The SDK's (BinaryMessage, PublishMessage), imported on first use, then kept: a publish
    looks them up once, not as an import statement per message."""
    from awsiot.greengrasscoreipc.model import BinaryMessage, PublishMessage

    return BinaryMessage, PublishMessage


def _unserved(exc: BaseException) -> bool:
    """Whether ``exc`` is the bare ``ServiceError`` (no message) Greengrass nucleus lite answers
    for an operation it does not serve."""
    cause = exc.__cause__
    return type(cause).__name__ == "ServiceError" and not getattr(cause, "message", None)


class _Unserved:
    """The subscription of an operation the Nucleus does not serve: nothing to close."""

    def close(self) -> None:
        return None


class _Stream:
    """A subscription that survives reconnects: :meth:`reopen` subscribes again on a new
    connection; :meth:`close` ends it for good."""

    def __init__(self, bus: IpcBus, what: str, open_: Callable[[Any], Any]) -> None:
        self.bus, self.what, self.open = bus, what, open_
        self.operation: Any = None

    def reopen(self, client: Any) -> None:
        try:
            self.operation = self.open(client)
        except Exception as exc:
            log.error(
                "could not subscribe again to %s: %s",
                self.what,
                exc,
                extra={"event": "bus.resubscribe_failed"},
            )

    def close(self) -> None:
        with self.bus._lock:
            if self in self.bus._streams:
                self.bus._streams.remove(self)
        if self.operation is not None:
            self.operation.close()


def _log_stream_error(what: str, exc: Exception) -> bool:
    log.error("IPC stream %s failed: %s", what, exc, extra={"event": "bus.stream_error"})
    return True
