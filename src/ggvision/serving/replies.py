"""Publishing results, and the counters of a model component (received, ok, errors, dropped
frames, overload answers, duplicates, failed publishes) with its recent latencies, under one lock.

Every message received ends as exactly one of: an ``ok`` answer, an error answer (by code), a
duplicate attached to the same request in flight, or a duplicate answered again from the recent
answers (:mod:`ggvision.serving.recent`); so ``received == ok + sum(errors) +
duplicates_in_flight + duplicates_answered`` once nothing is queued."""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from ggvision.bus import Bus
from ggvision.contract import InferenceResult, result_bytes

log = logging.getLogger(__name__)

ResultHook = Callable[[InferenceResult], None]


@dataclass
class Stats:
    received: int = 0
    ok: int = 0
    errors: dict[str, int] = field(default_factory=lambda: collections.defaultdict(int))
    dropped_frames: int = 0
    overloaded: int = 0
    publish_failures: int = 0
    duplicates_in_flight: int = 0  # attached to the same request queued or in flight
    duplicates_answered: int = 0  # answered again with a recent result, the model not run

    def snapshot(self) -> dict[str, Any]:
        return {
            "received": self.received,
            "ok": self.ok,
            "errors": dict(self.errors),
            "dropped_frames": self.dropped_frames,
            "overloaded": self.overloaded,
            "publish_failures": self.publish_failures,
            "duplicates_in_flight": self.duplicates_in_flight,
            "duplicates_answered": self.duplicates_answered,
        }


class Replies:
    """Publishes every result on its topic (never raises), counts it, and offers it to
    ``on_result`` (e.g. the uplink to IoT Core). ``role``: the prefix of the log event keys;
    ``task``: the ``task`` every result says (None: none)."""

    def __init__(self, bus: Bus, *, role: str, task: str | None = None) -> None:
        self.bus = bus
        self.role = role
        self.task = task  # stamped on every result (errors included) when set
        self.stats = Stats()
        self.on_result: ResultHook | None = None
        self._lock = threading.Lock()
        self._latencies: collections.deque[float] = collections.deque(maxlen=1000)

    def count(
        self,
        *,
        received: int = 0,
        dropped_frames: int = 0,
        overloaded: int = 0,
        duplicates_in_flight: int = 0,
    ) -> None:
        with self._lock:
            self.stats.received += received
            self.stats.dropped_frames += dropped_frames
            self.stats.overloaded += overloaded
            self.stats.duplicates_in_flight += duplicates_in_flight

    def repeat(self, answer: dict[str, Any], topic: str) -> None:
        """Publish a recent answer again (a duplicate request): counted as a duplicate, not as
        a new ``ok``, and not offered to ``on_result`` (the uplink sent it the first time)."""
        with self._lock:
            self.stats.duplicates_answered += 1
        rid = str(answer.get("id"))
        try:
            fut = self.bus.publish_json(topic, answer)
        except Exception:
            log.exception(
                "could not publish a result",
                extra={"event": f"{self.role}.publish_error", "id": rid},
            )
            with self._lock:
                self.stats.publish_failures += 1
            return
        fut.add_done_callback(lambda f: self._published(f, rid))

    def stamp(self, result: InferenceResult) -> None:
        """Give ``result`` this component's ``task`` (when it has one)."""
        if self.task is not None and result.task is None:
            result.task = self.task

    def serialize(self, result: InferenceResult) -> bytes | None:
        """``result`` as its message's bytes (:func:`result_bytes`), once for every use of it;
        None (logged) when it cannot be serialized: :meth:`reply` then counts the failure."""
        try:
            return result_bytes(result)
        except Exception:  # boundary: a result that does not serialize never stops the worker
            log.exception(
                "could not serialize a result",
                extra={"event": f"{self.role}.publish_error", "id": result.id},
            )
            return None

    def reply(self, result: InferenceResult, topic: str, data: bytes | None = None) -> None:
        """Publish ``result`` on ``topic`` (one publish, not waited for), count it and offer it
        to ``on_result``. ``data``: ``result`` already serialized (:func:`result_bytes`, after
        :meth:`stamp`), so that a result is serialized once."""
        self.stamp(result)
        with self._lock:
            if result.status == "ok":
                self.stats.ok += 1
                self._latencies.append(result.timing_ms.total)
            elif result.error is not None:
                self.stats.errors[result.error.code.value] += 1
        try:
            fut = self.bus.publish_bytes(topic, result_bytes(result) if data is None else data)
        except Exception:
            log.exception(
                "could not publish a result",
                extra={"event": f"{self.role}.publish_error", "id": result.id},
            )
            with self._lock:
                self.stats.publish_failures += 1
            return
        rid = result.id
        fut.add_done_callback(lambda f: self._published(f, rid))
        hook = self.on_result
        if hook is not None:
            try:
                hook(result)
            except Exception:  # boundary: an uplink problem never breaks the replies
                log.exception("result hook failed", extra={"event": f"{self.role}.hook_error"})

    def _published(self, fut: Future[Any], rid: str) -> None:
        exc = fut.exception()
        if exc is not None:
            with self._lock:
                self.stats.publish_failures += 1
            log.error(
                "result %s was not published: %s",
                rid,
                exc,
                extra={"event": f"{self.role}.publish_failed", "id": rid},
            )

    def snapshot(self) -> tuple[dict[str, Any], list[float]]:
        """The counters and the recent latencies (ms), consistent with each other."""
        with self._lock:
            return self.stats.snapshot(), list(self._latencies)
