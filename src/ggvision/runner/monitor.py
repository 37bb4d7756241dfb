"""The operator's console for ``ggvision core run --watch``: results as they arrive.

It observes the core's pubsub in-process (it is not a component, so it needs no token and no
accessControl): every request published on the request topic is timed from the moment the core
routed it, and every result on the result topic prints one line with the top prediction (a
detector's result: its boxes, label, score and corners in 0..1), the live
rate (results per second over the last few seconds) and the request-to-result latency measured by
the core. ``max_results`` sets :attr:`done` after that many results, for a bounded run. Once
results from more than one ``source`` (camera) have arrived, each line names its source
after the latency; a single camera's lines stay as they were.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable
from typing import Any, TextIO

from ggvision.contract import InferenceResult, ResultError, read_result
from ggvision.core.services.pubsub import PubSub
from ggvision.stats import percentile_of_sorted

_MAX_PENDING = 4096  # requests remembered while unanswered (the oldest are forgotten)
MALFORMED = "MALFORMED"  # the monitor's own count of messages that are no valid result


def _message(event: dict[str, Any]) -> dict[str, Any] | None:
    """The JSON object of a pubsub event (JSON or binary), or None when it is not one."""
    if "jsonMessage" in event:
        msg = event["jsonMessage"].get("message")
        return msg if isinstance(msg, dict) else None
    try:
        raw = base64.b64decode(event.get("binaryMessage", {}).get("message", ""), validate=True)
        obj = json.loads(raw)
    except (binascii.Error, ValueError, AttributeError):
        return None
    return obj if isinstance(obj, dict) else None


class ResultMonitor:
    def __init__(
        self,
        out: TextIO,
        *,
        request_topic: str = "local/inference",
        result_topic: str = "local/result",
        max_results: int | None = None,
        window_s: float = 3.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.out = out
        self.request_topic, self.result_topic = request_topic, result_topic
        self.max_results = max_results
        self.window_s = window_s
        self.clock = clock
        self.done = asyncio.Event()
        self.results = 0
        self.errors: Counter[str] = Counter()
        self.latencies_ms: deque[float] = deque(maxlen=100_000)
        self._sent: OrderedDict[str, float] = OrderedDict()
        self._recent: deque[float] = deque()
        self._first: float | None = None
        self._last: float | None = None
        self._removers: list[Callable[[], None]] = []
        self._sources: set[str] = set()  # the results' sources seen so far

    def attach(self, pubsub: PubSub) -> None:
        self._removers = [
            pubsub.observe(self.request_topic, self._on_request),
            pubsub.observe(self.result_topic, self._on_result),
        ]

    def detach(self) -> None:
        for remove in self._removers:
            remove()
        self._removers = []

    # --- observers (the core's loop) -----------------------------------------------------------
    def _on_request(self, publisher: str, topic: str, event: dict[str, Any]) -> None:
        msg = _message(event)
        rid = msg.get("id") if msg else None
        if isinstance(rid, str):
            self._sent[rid] = self.clock()
            while len(self._sent) > _MAX_PENDING:
                self._sent.popitem(last=False)

    def _on_result(self, publisher: str, topic: str, event: dict[str, Any]) -> None:
        msg = _message(event)
        if msg is None or self.done.is_set():
            return
        now = self.clock()
        self.results += 1
        self._first = now if self._first is None else self._first
        self._last = now
        self._recent.append(now)
        while self._recent and self._recent[0] < now - self.window_s:
            self._recent.popleft()
        span = now - self._recent[0] if len(self._recent) > 1 else 0.0
        fps = (len(self._recent) - 1) / span if span > 0 else 0.0
        rid = msg.get("id")
        started = self._sent.pop(rid, None) if isinstance(rid, str) else None
        latency = None if started is None else (now - started) * 1000
        if latency is not None:
            self.latencies_ms.append(latency)
        try:
            result = read_result(msg)
        except ResultError as exc:
            result, reason = None, str(exc)
        else:
            reason = "no string id"
        self.out.write(self.line(result, fps, latency, reason) + "\n")
        self.out.flush()
        if self.max_results is not None and self.results >= self.max_results:
            self.done.set()

    def line(
        self,
        result: InferenceResult | None,
        fps: float,
        latency_ms: float | None,
        reason: str = "",
    ) -> str:
        """One console line; ``result`` None is a message that is no valid result (``reason``)."""
        lat = f"{latency_ms:7.1f} ms" if latency_ms is not None else "      - ms"
        head = f"{self.results:6d}  {fps:5.1f} fps  {lat}  "
        if result is not None and result.source:
            self._sources.add(result.source)
            if len(self._sources) > 1:  # several cameras: say whose result this is
                head += f"{result.source[:16]:<8}  "
        if result is None:
            self.errors[MALFORMED] += 1
            return head + f"ERROR {MALFORMED}: not a valid result ({reason})"
        if result.status != "ok":
            code = result.error.code.value if result.error else "UNKNOWN"
            self.errors[code] += 1
            return head + f"ERROR {code}: {result.error.message if result.error else ''}"
        if result.detections is not None:
            if not result.detections:
                return head + "(nothing detected above the threshold)"
            return (
                head
                + ", ".join(
                    f"{d.label} {d.score:.2f} [{d.box.xmin:.2f} {d.box.ymin:.2f} "
                    f"{d.box.xmax:.2f} {d.box.ymax:.2f}]"
                    for d in result.detections[:4]
                )
                + (f" (+{len(result.detections) - 4})" if len(result.detections) > 4 else "")
            )
        if not result.predictions:
            return head + "(no prediction above the threshold)"
        top = ", ".join(f"{p.label} {p.score:.2f}" for p in result.predictions[:2])
        return head + top

    # --- summary -------------------------------------------------------------------------------
    def summary(self) -> str:
        if not self.results:
            return "no results"
        span = (self._last or 0.0) - (self._first or 0.0)
        rate = f", {(self.results - 1) / span:.1f} results/s" if span > 0 else ""
        errors = sum(self.errors.values())
        text = f"{self.results} results ({errors} errors{rate})"
        if self.errors:
            text += " errors by code: " + ", ".join(f"{k} {v}" for k, v in self.errors.items())
        if self.latencies_ms:
            ordered = sorted(self.latencies_ms)
            text += (
                f"; request->result latency p50 {percentile_of_sorted(ordered, 50):.1f} ms,"
                f" p95 {percentile_of_sorted(ordered, 95):.1f} ms"
            )
        return text
