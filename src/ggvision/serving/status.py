"""The Health report of a model component (``ggvision.telemetry``): rate, latency percentiles,
queue depth, drops and errors from the worker, plus the model's, the swaps' and the uplink's
state."""

from __future__ import annotations

from typing import Any

from ggvision.serving.worker import Worker
from ggvision.stats import percentiles
from ggvision.telemetry import Health, RateMeter


def health(
    worker: Worker,
    rate: RateMeter,
    *,
    model_key: str,
    model_error: str | None,
    last_swap: dict[str, Any] | None,
    last_command: dict[str, Any] | None,
    uplink: dict[str, Any] | None,
    auto: dict[str, Any] | None = None,
) -> Health:
    """The report now: RUNNING while a model serves, else ERRORED. ``uplink``: its counters
    (None without one); ``auto``: what modelKey auto chose and why (only with it)."""
    stats, latencies = worker.snapshot()
    p50, p95 = percentiles(latencies)
    active = worker.active
    return Health(
        state="RUNNING" if active else "ERRORED",
        fps=rate.rate(stats["ok"]),
        latency_p50_ms=p50,
        latency_p95_ms=p95,
        queue_depth=worker.queue_depth(),
        dropped=stats["dropped_frames"] + stats["overloaded"],
        errors=stats["errors"],
        model=active.info.model_dump() if active else None,
        extra={
            "model_key": model_key,
            "received": stats["received"],
            "ok": stats["ok"],
            "publish_failures": stats["publish_failures"],
            "duplicates": {
                "in_flight": stats["duplicates_in_flight"],
                "answered": stats["duplicates_answered"],
            },
            "model_error": model_error,
            "last_swap": last_swap,
            "last_command": last_command,
            "uplink": uplink,
            **({"model_auto": auto} if auto is not None else {}),
        },
    )
