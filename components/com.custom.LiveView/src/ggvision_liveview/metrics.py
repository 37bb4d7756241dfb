"""``/metrics``: the results the live view sees and the components' status figures, as
Prometheus text (``prometheus_client``, its own registry: no process or platform collectors).

What the live view counts itself, per ``camera`` (the request's ``source``):

* ``ggvision_results_total{camera,status}`` counter, ``ggvision_result_errors_total{camera,code}``
  counter, ``ggvision_result_latency_seconds{camera}`` histogram (``timing_ms.total``).

What the components report (their newest status, one label set per ``component`` and
``camera``; ``camera`` is empty for a component that is not a camera):

* gauges ``ggvision_component_up`` (1 while its status is fresh and says it works),
  ``ggvision_component_fps``, ``ggvision_component_queue_depth``,
  ``ggvision_component_latency_ms{quantile="0.5"|"0.95"}``, ``ggvision_component_uptime_seconds``,
  ``ggvision_component_status_timestamp_seconds`` (the status's own ``ts``: match a scrape
  to the status it shows), ``ggvision_component_info{model,version,backend,precision}``;
* counters ``ggvision_component_dropped_total`` and ``ggvision_component_errors_total{code}``
  (the component's own running totals, as it reports them).
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from ggvision_liveview.state import LiveState, ResultEvent

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
_LABELS = ["component", "camera"]


class StatusCollector(Collector):
    """The newest status of each component, read at scrape time."""

    def __init__(self, state: LiveState) -> None:
        self.state = state

    def collect(self) -> Iterator[Metric]:
        panels = self.state.snapshot()["components"]
        up = GaugeMetricFamily("ggvision_component_up", "1: fresh and working", labels=_LABELS)
        fps = GaugeMetricFamily("ggvision_component_fps", "reported rate", labels=_LABELS)
        queue = GaugeMetricFamily("ggvision_component_queue_depth", "queued", labels=_LABELS)
        latency = GaugeMetricFamily(
            "ggvision_component_latency_ms", "reported percentile", labels=[*_LABELS, "quantile"]
        )
        uptime = GaugeMetricFamily("ggvision_component_uptime_seconds", "uptime", labels=_LABELS)
        ts = GaugeMetricFamily(
            "ggvision_component_status_timestamp_seconds", "the status's ts", labels=_LABELS
        )
        info = GaugeMetricFamily(
            "ggvision_component_info",
            "the model a component serves",
            labels=[*_LABELS, "model", "version", "backend", "precision"],
        )
        dropped = CounterMetricFamily(
            "ggvision_component_dropped", "reported drops", labels=_LABELS
        )
        errors = CounterMetricFamily(
            "ggvision_component_errors", "reported errors by code", labels=[*_LABELS, "code"]
        )
        for p in panels:
            labels = [p["component"], p["camera"] or ""]
            up.add_metric(labels, 1.0 if p["state"] == "up" else 0.0)
            for family, key in ((fps, "fps"), (queue, "queue_depth"), (uptime, "uptime_s")):
                if p[key] is not None:
                    family.add_metric(labels, p[key])
            for q, key in (("0.5", "latency_p50_ms"), ("0.95", "latency_p95_ms")):
                if p[key] is not None:
                    latency.add_metric([*labels, q], p[key])
            if p["ts"] is not None:
                ts.add_metric(labels, p["ts"] / 1000)
            if p["model"] is not None:
                m = p["model"]
                info.add_metric(
                    [*labels, *(m[k] or "" for k in ("name", "version", "backend", "precision"))],
                    1.0,
                )
            if p["dropped"] is not None:
                dropped.add_metric(labels, p["dropped"])
            for code, n in sorted(p["errors"].items()):
                errors.add_metric([*labels, code], n)
        yield from (up, fps, queue, latency, uptime, ts, info, dropped, errors)


class Metrics:
    """The registry behind ``/metrics``; :meth:`observe` is the state's result hook."""

    def __init__(self, state: LiveState | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.results = Counter(
            "ggvision_results",
            "answers seen on the result topic",
            ["camera", "status"],
            registry=self.registry,
        )
        self.errors = Counter(
            "ggvision_result_errors",
            "error answers by code",
            ["camera", "code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "ggvision_result_latency_seconds",
            "request receipt to result (timing_ms.total)",
            ["camera"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        if state is not None:
            self.watch(state)

    def watch(self, state: LiveState) -> None:
        self.registry.register(StatusCollector(state))

    def observe(self, event: ResultEvent) -> None:
        self.results.labels(event.camera, event.status).inc()
        if event.error_code is not None:
            self.errors.labels(event.camera, event.error_code).inc()
        self.latency.labels(event.camera).observe(event.latency_s)

    def render(self) -> bytes:
        return generate_latest(self.registry)
