"""The thin pub/sub and config wrapper every component uses, over Greengrass IPC.

Components depend on :class:`Bus`; :class:`IpcBus` implements it with the ``awsiotsdk`` client
(imported only when a bus is created, so nothing happens at import time). Callbacks run on the
SDK's threads: they must only decode, validate and hand off — never block, never raise.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, Protocol

from ggvision.errors import GgvisionError

log = logging.getLogger(__name__)

MessageHandler = Callable[[str, bytes | dict[str, Any]], None]
ConfigHandler = Callable[[list[str]], None]
# (topic, payload) of a message from AWS IoT Core.
IotHandler = Callable[[str, bytes], None]
# Returns (accepted, message) for a proposed configuration of a deployment.
Validator = Callable[[dict[str, Any]], tuple[bool, str]]


class BusError(GgvisionError):
    """An IPC call failed (the message names the modeled error when there is one)."""


class Subscription(Protocol):
    def close(self) -> None: ...


class Bus(Protocol):
    def publish_json(self, topic: str, obj: dict[str, Any]) -> Future[Any]: ...
    def subscribe(self, topic: str, handler: MessageHandler) -> Subscription: ...
    def get_configuration(
        self, key_path: list[str] | None = None, component: str | None = None
    ) -> dict[str, Any]: ...
    def subscribe_configuration(self, handler: ConfigHandler) -> Subscription: ...
    def subscribe_validation(self, validator: Validator) -> Subscription: ...
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

    def __init__(self, timeout_s: float = 10.0) -> None:
        try:
            from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2
        except ImportError as exc:  # pragma: no cover - awsiotsdk is a core dependency
            raise BusError("awsiotsdk is not installed") from exc
        try:
            self._client = GreengrassCoreIPCClientV2()
        except KeyError as exc:
            raise BusError(
                f"not running as a Greengrass component: environment variable {exc} is missing "
                "(start it with `ggvision core run` or `ggvision core exec`)"
            ) from exc
        except Exception as exc:
            raise _err(exc) from exc
        self.timeout_s = timeout_s
        self._lock = threading.Lock()

    # --- pub/sub ------------------------------------------------------------------------------
    def publish_json(self, topic: str, obj: dict[str, Any]) -> Future[Any]:
        """Publish without blocking; the returned future fails with the modeled error."""
        from awsiot.greengrasscoreipc.model import BinaryMessage, PublishMessage

        data = json.dumps(obj, separators=(",", ":")).encode()
        msg = PublishMessage(binary_message=BinaryMessage(message=data))
        fut: Future[Any] = self._client.publish_to_topic_async(topic=topic, publish_message=msg)
        return fut

    def publish_bytes(self, topic: str, data: bytes) -> Future[Any]:
        """Publish raw bytes (e.g. a JSON array) without blocking."""
        from awsiot.greengrasscoreipc.model import BinaryMessage, PublishMessage

        msg = PublishMessage(binary_message=BinaryMessage(message=data))
        fut: Future[Any] = self._client.publish_to_topic_async(topic=topic, publish_message=msg)
        return fut

    def subscribe(self, topic: str, handler: MessageHandler) -> Subscription:
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

        try:
            _, operation = self._client.subscribe_to_topic(
                topic=topic,
                on_stream_event=on_event,
                on_stream_error=lambda e: _log_stream_error(topic, e),
            )
        except Exception as exc:
            raise _err(exc) from exc
        return operation  # type: ignore[no-any-return]

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

        try:
            _, operation = self._client.subscribe_to_configuration_update(
                key_path=[],
                on_stream_event=on_event,
                on_stream_error=lambda e: _log_stream_error("configuration", e),
            )
        except Exception as exc:
            raise _err(exc) from exc
        return operation  # type: ignore[no-any-return]

    def subscribe_validation(self, validator: Validator) -> Subscription:
        from awsiot.greengrasscoreipc.model import ConfigurationValidityReport

        client = self._client

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
                client.send_configuration_validity_report(configuration_validity_report=report)
            except Exception:
                log.exception(
                    "could not send the validity report",
                    extra={"event": "bus.validity_report_failed"},
                )

        def on_event(event: Any) -> None:
            # Answering is a blocking IPC call: do it off the SDK's callback thread.
            threading.Thread(target=answer, args=(event,), daemon=True).start()

        try:
            _, operation = client.subscribe_to_validate_configuration_updates(
                on_stream_event=on_event,
                on_stream_error=lambda e: _log_stream_error("validation", e),
            )
        except Exception as exc:
            raise _err(exc) from exc
        return operation  # type: ignore[no-any-return]

    # --- lifecycle / IoT Core -------------------------------------------------------------------
    def update_state(self, state: str) -> None:
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
        """SubscribeToIoTCore: ``handler(topic, payload)`` on the SDK's thread."""

        def on_event(event: Any) -> None:
            try:
                msg = event.message
                if msg is not None:
                    handler(str(msg.topic_name), bytes(msg.payload or b""))
            except Exception:  # boundary: never raise into the SDK's threads
                log.exception(
                    "IoT Core handler failed", extra={"event": "bus.handler_error", "topic": topic}
                )

        try:
            _, operation = self._client.subscribe_to_iot_core(
                topic_name=topic,
                qos=str(qos),
                on_stream_event=on_event,
                on_stream_error=lambda e: _log_stream_error(topic, e),
            )
        except Exception as exc:
            raise _err(exc) from exc
        return operation  # type: ignore[no-any-return]

    def close(self) -> None:
        try:
            self._client.close()
        except Exception:
            log.debug("closing the IPC client failed", exc_info=True)


def _log_stream_error(what: str, exc: Exception) -> bool:
    log.error("IPC stream %s failed: %s", what, exc, extra={"event": "bus.stream_error"})
    return True
