"""The Health report of a model component (``ggvision.telemetry``): rate, latency percentiles,
queue depth, drops and errors from the worker, the same per request source (``sources``: at most
``maxSources`` of them and ``(other)``, see :mod:`ggvision.serving.intake`), plus the model's,
the swaps' and the uplink's state."""

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
    request_topic: str | None = None,
    auto: dict[str, Any] | None = None,
) -> Health:
    """The report now: RUNNING while a model serves, else ERRORED. ``uplink``: its counters
    (None without one). ``frame_plane``: the plane the model takes of frames requested on
    ``request_topic`` (a camera makes it at the model's input size; ``docs/messages.md``) and
    how the frame requests were served; None while no model serves, or it takes none.
    ``auto``: what modelKey auto chose and why (only with it)."""
    stats, latencies = worker.snapshot()
    p50, p95 = percentiles(latencies)
    active = worker.active
    encoder = active.task.plane_encoder(active.model) if active else None
    plane = None
    if encoder is not None and request_topic is not None:
        plane = {
            "topic": request_topic,
            "spec": encoder.spec.model_dump(),
            "frames": dict(worker.loader.planes),
        }
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
            "frame_plane": plane,
            "batching": {
                "limit": worker.batch_limit(),
                "batches": worker.batches,
                "batched_requests": worker.batched,
            },
            "sources": worker.sources(),
            **({"model_auto": auto} if auto is not None else {}),
        },
    )
