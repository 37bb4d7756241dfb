"""Model-switch commands from AWS IoT Core: ``{"model": <key in the model store>, "backend"?:
..., "id"?: ...}`` on the configured command topic. A command is validated like a deployment
(the model is loaded and kept as the candidate), then applied as a configuration update of the
component itself; the answer goes to the reply topic. Never a URL or a path: keys only.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any, Generic, Protocol, Self, TypeVar

from ggvision.bus import Bus, Subscription
from ggvision.errors import GgvisionError
from ggvision.serving.models.auto import AUTO_KEY
from ggvision.serving.models.loading import ModelSettings
from ggvision.serving.models.store import ModelError, model_keys, store_root
from ggvision.serving.swap import ModelSwapper
from ggvision.uplink import resolve_topic

log = logging.getLogger(__name__)


class CommandSettings(ModelSettings, Protocol):
    """The configuration a command reads (a pydantic model: ``model_copy``)."""

    @property
    def command_topic(self) -> str: ...
    @property
    def command_reply_topic(self) -> str: ...
    def model_copy(
        self, *, update: Mapping[str, Any] | None = None, deep: bool = False
    ) -> Self: ...


C = TypeVar("C", bound=CommandSettings)


class ModelCommands(Generic[C]):
    """Subscribes to the command topic of the current configuration (``current()``) and
    answers each command; ``backends``: the backend names a command may ask for."""

    def __init__(
        self,
        bus: Bus,
        swapper: ModelSwapper[C],
        current: Callable[[], C],
        *,
        backends: tuple[str, ...],
        role: str,
    ) -> None:
        self.bus = bus
        self.swapper = swapper
        self.current = current
        self.backends = backends
        self.role = role
        self.last_command: dict[str, Any] | None = None
        self._sub: Subscription | None = None

    def subscribe(self, cfg: C) -> None:
        """(Re)subscribe to ``cfg``'s command topic; none when it is empty."""
        self.close()
        if not cfg.command_topic:
            return
        topic = resolve_topic(cfg.command_topic)
        try:
            self._sub = self.bus.subscribe_iot(topic, self.on_command)
        except GgvisionError as exc:
            log.error(
                "cannot subscribe to commands on %s: %s",
                topic,
                exc,
                extra={"event": f"{self.role}.command_error"},
            )

    def close(self) -> None:
        if self._sub is not None:
            try:
                self._sub.close()
            except Exception:
                log.debug("closing the command subscription failed", exc_info=True)
            self._sub = None

    def on_command(self, topic: str, payload: bytes) -> None:
        # Runs on the SDK's thread: loading a model is slow.
        threading.Thread(
            target=self.command, args=(payload,), name=f"{self.role}-command", daemon=True
        ).start()

    def command(self, payload: bytes) -> dict[str, Any]:
        """Switch to a model of the store on a cloud command ``{"model": <key>, "backend": ...,
        "id": ...}``; answers on the reply topic. Never a URL or a path: keys only."""
        reply: dict[str, Any] = {"id": None, "status": "rejected"}
        try:
            msg = json.loads(payload)
            if not isinstance(msg, dict):
                raise ValueError("a command is a JSON object")
            reply["id"] = msg.get("id") if isinstance(msg.get("id"), str) else None
            key, backend = msg.get("model"), msg.get("backend", "")
            reply["model"] = key
            if not isinstance(key, str) or not key:
                raise ValueError("'model' must name a model of the store")
            if not isinstance(backend, str) or backend not in ("", *self.backends):
                raise ValueError(f"'backend' must be one of {', '.join(self.backends)} or empty")
            swapper = self.swapper
            with swapper.lock:
                cfg = self.current()
                keys = model_keys(store_root(cfg.model_store_path))
                if key not in keys and key != AUTO_KEY:
                    raise ValueError(
                        f"model {key!r} is not in the model store (present: {', '.join(keys)})"
                    )
                proposed = cfg.model_copy(update={"model_key": key, "backend": backend})
                swapper.keep_candidate(proposed, swapper.prepare(proposed))
            self.bus.update_configuration([], {"modelKey": key, "backend": backend})
            reply["status"] = "accepted"
        except (ValueError, ModelError, GgvisionError) as exc:
            reply["reason"] = str(exc)
            log.warning(
                "model switch command rejected: %s",
                exc,
                extra={"event": f"{self.role}.command"},
            )
        self.last_command = reply
        self._reply(reply)
        return reply

    def _reply(self, reply: dict[str, Any]) -> None:
        cfg = self.current()
        topic = cfg.command_reply_topic or f"{cfg.command_topic}/reply"
        try:
            data = json.dumps(reply, separators=(",", ":")).encode()
            self.bus.publish_iot(resolve_topic(topic), data, 1).result(10)
        except Exception as exc:  # best effort: the answer is also in the status report
            log.warning("command reply not sent: %s", exc, extra={"event": f"{self.role}.command"})
