"""The IoT Core bridge: PublishToIoTCore / SubscribeToIoTCore carried to a real MQTT broker.

On a device the Nucleus holds the MQTT connection to AWS IoT Core; here the core holds one to
any MQTT 3.1.1 broker (mosquitto in tests). QoS 1 publishes complete only when the broker's
PUBACK arrives, so a component that gets a success knows its message was accepted; while the link
is down calls fail fast with a ServiceError and the component decides what to buffer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Any, Protocol

from ggvision.errors import GgvisionError

log = logging.getLogger(__name__)

OnMessage = Callable[[str, bytes, bool], None]


class IotLinkError(GgvisionError):
    """The MQTT link is down or the broker did not acknowledge in time."""


class IotBridge(Protocol):
    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def publish(self, topic: str, payload: bytes, qos: int, retain: bool) -> None: ...
    async def subscribe(
        self, topic_filter: str, qos: int, on_message: OnMessage
    ) -> Callable[[], None]: ...


def parse_broker(spec: str) -> tuple[str, int]:
    """``host:port`` (port defaults to 1883)."""
    host, _, port = spec.rpartition(":")
    if not host:
        return spec, 1883
    try:
        return host, int(port)
    except ValueError as exc:
        raise GgvisionError(f"bad MQTT broker address {spec!r}: expected HOST:PORT") from exc


class MqttBridge:
    def __init__(
        self,
        host: str,
        port: int = 1883,
        *,
        client_id: str = "ggvision-core",
        ack_timeout_s: float = 10.0,
        keepalive_s: int = 30,
    ) -> None:
        self.host, self.port = host, port
        self.client_id = client_id
        self.ack_timeout_s = ack_timeout_s
        self.keepalive_s = keepalive_s
        self._client: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connected = threading.Event()
        self._lock = threading.Lock()
        self._acks: dict[int, asyncio.Future[int]] = {}
        self._subs: dict[str, dict[int, tuple[int, OnMessage]]] = {}
        self._next_handle = 0
        self.published = 0

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def start(self) -> None:
        try:
            import paho.mqtt.client as mqtt
            from paho.mqtt.enums import CallbackAPIVersion
        except ImportError as exc:
            raise GgvisionError(
                "the IoT Core bridge needs package paho-mqtt: install extra [mqtt]"
            ) from exc
        self._loop = asyncio.get_running_loop()
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=mqtt.MQTTv311,
            clean_session=True,
        )
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_publish = self._on_ack
        client.on_subscribe = self._on_suback
        client.reconnect_delay_set(min_delay=1, max_delay=5)
        self._client = client
        client.connect_async(self.host, self.port, keepalive=self.keepalive_s)
        client.loop_start()
        # Give the first connection a moment; being offline at start is allowed.
        await asyncio.get_running_loop().run_in_executor(None, self._connected.wait, 3.0)
        log.info(
            "MQTT bridge %s to %s:%s",
            "connected" if self.connected else "connecting",
            self.host,
            self.port,
            extra={"event": "mqtt.start"},
        )

    async def stop(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        with contextlib.suppress(Exception):
            client.disconnect()
        await asyncio.get_running_loop().run_in_executor(None, client.loop_stop)
        for fut in self._acks.values():
            if not fut.done():
                fut.set_exception(IotLinkError("bridge stopped"))
        self._acks.clear()

    # --- paho callbacks (paho's network thread) -------------------------------------------------
    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if getattr(reason, "is_failure", False):
            log.warning("MQTT connect refused: %s", reason, extra={"event": "mqtt.refused"})
            return
        self._connected.set()
        log.info("MQTT connected", extra={"event": "mqtt.connected"})
        with self._lock:
            filters = [
                (f, max(q for q, _ in subs.values())) for f, subs in self._subs.items() if subs
            ]
        for topic_filter, qos in filters:
            client.subscribe(topic_filter, qos)

    def _on_disconnect(
        self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        was = self._connected.is_set()
        self._connected.clear()
        if was:
            log.warning("MQTT disconnected: %s", reason, extra={"event": "mqtt.disconnected"})
        loop = self._loop
        if loop is not None:
            loop.call_soon_threadsafe(self._fail_pending, "MQTT connection lost")

    def _fail_pending(self, why: str) -> None:
        acks, self._acks = self._acks, {}
        for fut in acks.values():
            if not fut.done():
                fut.set_exception(IotLinkError(why))

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        import paho.mqtt.client as mqtt

        topic, payload, retain = message.topic, bytes(message.payload), bool(message.retain)
        with self._lock:
            targets = [
                cb
                for f, subs in self._subs.items()
                if mqtt.topic_matches_sub(f, topic)
                for _, cb in subs.values()
            ]
        loop = self._loop
        if loop is None:
            return
        for cb in targets:
            loop.call_soon_threadsafe(_safe_call, cb, topic, payload, retain)

    def _on_ack(self, client: Any, userdata: Any, mid: int, *rest: Any) -> None:
        loop = self._loop
        if loop is not None:
            loop.call_soon_threadsafe(self._resolve, mid)

    def _on_suback(self, client: Any, userdata: Any, mid: int, reasons: Any, props: Any) -> None:
        loop = self._loop
        failed = any(getattr(r, "is_failure", False) for r in reasons or [])
        if loop is not None:
            loop.call_soon_threadsafe(self._resolve, mid, failed)

    def _resolve(self, mid: int, failed: bool = False) -> None:
        fut = self._acks.pop(mid, None)
        if fut is not None and not fut.done():
            if failed:
                fut.set_exception(IotLinkError("broker refused the subscription"))
            else:
                fut.set_result(mid)

    # --- API (event loop) -----------------------------------------------------------------------
    def _require_link(self) -> Any:
        if self._client is None or not self.connected:
            raise IotLinkError(f"not connected to the MQTT broker at {self.host}:{self.port}")
        return self._client

    async def _await_ack(self, mid: int, fut: asyncio.Future[int], what: str) -> None:
        try:
            await asyncio.wait_for(fut, self.ack_timeout_s)
        except TimeoutError as exc:
            self._acks.pop(mid, None)
            raise IotLinkError(f"no {what} from the broker within {self.ack_timeout_s}s") from exc

    async def publish(self, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        client = self._require_link()
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[int] = loop.create_future()
        info = client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc != 0:
            raise IotLinkError(f"publish failed (rc={info.rc})")
        self.published += 1
        if qos == 0:
            return
        if info.is_published():
            return
        self._acks[info.mid] = fut
        if info.is_published():  # acked between the check and the registration
            self._acks.pop(info.mid, None)
            return
        await self._await_ack(info.mid, fut, "PUBACK")

    async def subscribe(
        self, topic_filter: str, qos: int, on_message: OnMessage
    ) -> Callable[[], None]:
        client = self._require_link()
        with self._lock:
            self._next_handle += 1
            handle = self._next_handle
            subs = self._subs.setdefault(topic_filter, {})
            subs[handle] = (qos, on_message)
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[int] = loop.create_future()
        rc, mid = client.subscribe(topic_filter, qos)
        if rc != 0:
            self._drop(topic_filter, handle)
            raise IotLinkError(f"subscribe failed (rc={rc})")
        self._acks[mid] = fut
        try:
            await self._await_ack(mid, fut, "SUBACK")
        except IotLinkError:
            self._drop(topic_filter, handle)
            raise

        def unsubscribe() -> None:
            if self._drop(topic_filter, handle) and self._client is not None:
                self._client.unsubscribe(topic_filter)

        return unsubscribe

    def _drop(self, topic_filter: str, handle: int) -> bool:
        """Forget one subscriber; True when it was the filter's last."""
        with self._lock:
            subs = self._subs.get(topic_filter)
            if not subs:
                return False
            subs.pop(handle, None)
            if subs:
                return False
            del self._subs[topic_filter]
            return True


def _safe_call(cb: OnMessage, topic: str, payload: bytes, retain: bool) -> None:
    try:
        cb(topic, payload, retain)
    except Exception:
        log.exception("IoT Core message handler failed", extra={"event": "mqtt.handler_error"})
