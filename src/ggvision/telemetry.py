"""Periodic health reports of a component: a status message on ``local/status/<component>`` and
the same figures as Greengrass telemetry metrics on ``$local/greengrass/telemetry``.

The status payload (JSON object)::

    {"type": "status", "component": "com.custom.ImageClassifier", "state": "RUNNING",
     "ts": 1764620000000, "uptime_s": 12.5, "fps": 9.8, "latency_ms": {"p50": 31.0, "p95": 44.2},
     "queue_depth": 0, "dropped": 0, "errors": {"IMAGE_NOT_FOUND": 1},
     "model": {"name": ..., "version": ..., "backend": ..., "precision": ...} | null,
     ...component-specific keys}

The telemetry payload is a JSON array in the Nucleus emitter's form, one entry per figure:
``{"NS": "GreengrassVision", "N": "<component>.Fps", "U": "Count/Second", "A": "Average",
"V": 9.8, "TS": <epoch ms>}``. Strings (model name, state) are only in the status message.
A component made of named parts (CameraSource's cameras) adds each part's figures as
``<component>.<part>.<figure>`` (``Health.parts``); the status message carries them in its own keys.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ggvision.bus import Bus

log = logging.getLogger(__name__)

TELEMETRY_TOPIC = "$local/greengrass/telemetry"
NAMESPACE = "GreengrassVision"


def status_topic(component: str) -> str:
    return f"local/status/{component}"


@dataclass(slots=True)
class Health:
    """The figures every component reports (the rest of a status is component-specific)."""

    state: str = "RUNNING"
    fps: float = 0.0
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None
    queue_depth: int = 0
    dropped: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    model: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    parts: dict[str, Health] = field(default_factory=dict)  # telemetry per named part


class RateMeter:
    """Events per second between two reads of a monotonically growing counter."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._last = (clock(), 0)

    def rate(self, count: int) -> float:
        now = self._clock()
        then, before = self._last
        self._last = (now, count)
        span = now - then
        return round((count - before) / span, 3) if span > 0 else 0.0


def status_message(component: str, health: Health, uptime_s: float, ts_ms: int) -> dict[str, Any]:
    return {
        "type": "status",
        "component": component,
        "state": health.state,
        "ts": ts_ms,
        "uptime_s": round(uptime_s, 3),
        "fps": round(health.fps, 3),
        "latency_ms": {"p50": health.latency_p50_ms, "p95": health.latency_p95_ms},
        "queue_depth": health.queue_depth,
        "dropped": health.dropped,
        "errors": dict(health.errors),
        "model": health.model,
        **health.extra,
    }


def telemetry_metrics(
    component: str, health: Health, uptime_s: float, ts_ms: int
) -> list[dict[str, Any]]:
    """The status figures as Nucleus telemetry entries ``{NS, N, U, A, V, TS}``."""
    figures: list[tuple[str, str, str, float]] = [
        ("Fps", "Count/Second", "Average", health.fps),
        ("QueueDepth", "Count", "Average", health.queue_depth),
        ("Dropped", "Count", "Sum", health.dropped),
        ("Errors", "Count", "Sum", sum(health.errors.values())),
        ("UptimeSeconds", "Seconds", "Maximum", round(uptime_s, 3)),
        ("Healthy", "Count", "Average", 1 if health.state == "RUNNING" else 0),
    ]
    if health.latency_p50_ms is not None:
        figures.append(("LatencyP50", "Milliseconds", "Average", health.latency_p50_ms))
    if health.latency_p95_ms is not None:
        figures.append(("LatencyP95", "Milliseconds", "Average", health.latency_p95_ms))
    figures += [(f"Errors.{code}", "Count", "Sum", n) for code, n in sorted(health.errors.items())]
    for part, sub in sorted(health.parts.items()):
        figures += [
            (f"{part}.{name}", unit, agg, value) for name, unit, agg, value in _part_figures(sub)
        ]
    # A model component's per-source figures (bounded by its maxSources): Source.<name>.<figure>.
    for source, fig in sorted((health.extra.get("sources") or {}).items()):
        name = "Source." + re.sub(r"[^A-Za-z0-9_.-]", "_", str(source))[:64]
        figures += [
            (f"{name}.Fps", "Count/Second", "Average", fig["fps"]),
            (f"{name}.Dropped", "Count", "Sum", fig["dropped"]),
        ]
        figures += [
            (f"{name}.Latency{which.upper()}", "Milliseconds", "Average", value)
            for which, value in fig["latency_ms"].items()
            if value is not None
        ]
    learning = health.extra.get("learning")
    if isinstance(learning, dict):  # a classifier's learned classes (docs/imprinting.md)
        figures += [
            ("LearnedClasses", "Count", "Maximum", int(learning.get("classes", 0))),
            ("LearnedShots", "Count", "Maximum", int(learning.get("shots", 0))),
        ]
    return [
        {"NS": NAMESPACE, "N": f"{component}.{name}", "U": unit, "A": agg, "V": value, "TS": ts_ms}
        for name, unit, agg, value in figures
    ]


def _part_figures(health: Health) -> list[tuple[str, str, str, float]]:
    figures: list[tuple[str, str, str, float]] = [
        ("Fps", "Count/Second", "Average", health.fps),
        ("QueueDepth", "Count", "Average", health.queue_depth),
        ("Dropped", "Count", "Sum", health.dropped),
        ("Errors", "Count", "Sum", sum(health.errors.values())),
        ("Healthy", "Count", "Average", 1 if health.state == "RUNNING" else 0),
    ]
    if health.latency_p95_ms is not None:
        figures.append(("LatencyP95", "Milliseconds", "Average", health.latency_p95_ms))
    return figures


class StatusReporter:
    """Publishes ``collect()`` every ``interval_s`` on the status and telemetry topics.

    ``collect`` runs on the reporter's thread; it must be cheap and thread-safe. A report that
    cannot be published is logged and skipped (best effort, never raises).
    """

    def __init__(
        self,
        bus: Bus,
        component: str,
        collect: Callable[[], Health],
        *,
        interval_s: float = 10.0,
        topic: str | None = None,
        telemetry: bool = True,
    ) -> None:
        self.bus = bus
        self.component = component
        self.collect = collect
        self.interval_s = interval_s
        self.topic = topic or status_topic(component)
        self.telemetry = telemetry
        self.started_at = time.monotonic()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._run, name=f"status-{self.component}", daemon=True
        )
        self._thread.start()

    def stop(self, final: bool = True) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(5)
        if final:
            self.report(wait_s=2.0)

    def _run(self) -> None:
        while not self._stopping.wait(self.interval_s):
            self.report()

    def report(self, wait_s: float = 0.0) -> dict[str, Any]:
        """Collect and publish one report now; returns the status message."""
        try:
            health = self.collect()
        except Exception:  # boundary: a failing collector never stops the component
            log.exception("status collection failed", extra={"event": "status.collect_error"})
            return {}
        uptime = time.monotonic() - self.started_at
        ts = int(time.time() * 1000)
        status = status_message(self.component, health, uptime, ts)
        futures = []
        try:
            futures.append(self.bus.publish_json(self.topic, status))
            if self.telemetry:
                metrics = telemetry_metrics(self.component, health, uptime, ts)
                data = json.dumps(metrics, separators=(",", ":")).encode()
                futures.append(self.bus.publish_bytes(TELEMETRY_TOPIC, data))
        except Exception:  # boundary: a status report is best effort
            log.exception("could not publish the status", extra={"event": "status.publish_error"})
        for fut in futures:
            fut.add_done_callback(_log_failure)
        if wait_s and futures:
            import concurrent.futures

            concurrent.futures.wait(futures, timeout=wait_s)
        return status


def _log_failure(fut: Any) -> None:
    exc = fut.exception()
    if exc is not None:
        log.warning("status not published: %s", exc, extra={"event": "status.publish_error"})
