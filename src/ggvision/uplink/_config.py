"""The ``uplink`` section of a component's configuration: what goes to IoT Core, and the bounds
of the queue, the outbox and the link."""

from __future__ import annotations

from pydantic import Field

from ggvision.config import ConfigModel, publishes_to_iot_core
from ggvision.contract import InferenceResult


class UplinkConfig(ConfigModel):
    """The ``uplink`` section of a component's configuration."""

    enabled: bool = Field(False, description="publish results to AWS IoT Core")
    topic: str = Field(
        "ggvision/{thing}/results",
        min_length=1,
        description="IoT Core topic; {thing} is replaced by the core's thing name",
        json_schema_extra=publishes_to_iot_core(),
    )
    every: int = Field(1, ge=1, le=1_000_000, description="publish 1 of every N matching results")
    labels: list[str] = Field(
        default_factory=list,
        description="only results whose top label is listed (a detector's: with a box of a "
        "listed label; empty: any)",
    )
    min_score: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="only results whose top score ≥ (a detector's: with a box scoring ≥, of a "
        "listed label when labels are given)",
    )
    top_k: int = Field(3, ge=1, le=100, description="predictions per payload")
    include_errors: bool = Field(False, description="also publish error results")
    outbox_path: str = Field(
        "", description="SQLite outbox file; empty: uplink-outbox.sqlite3 in the work directory"
    )
    outbox_max_messages: int = Field(
        100_000, ge=1, description="outbox bound; the oldest are evicted beyond it"
    )
    outbox_max_bytes: int = Field(
        64 * 1024 * 1024, ge=64 * 1024, description="outbox file size bound (bytes)"
    )
    queue_size: int = Field(
        1000,
        ge=1,
        description="results waiting in memory; a backlog over half of it moves to the outbox, "
        "beyond it dropped, counted",
    )
    max_in_flight: int = Field(
        16, ge=1, le=1000, description="QoS 1 publishes awaiting their PUBACK at once"
    )
    publish_timeout_seconds: float = Field(10.0, gt=0, description="wait for a PUBACK")
    retry_max_seconds: float = Field(30.0, gt=0, description="longest wait between retries")


def selects(cfg: UplinkConfig, result: InferenceResult) -> bool:
    """Whether ``result`` passes the ``labels`` / ``minScore`` / ``includeErrors`` filter
    (``every`` is applied after it). A classification is judged by its top prediction; a
    detection by its boxes: it passes when one box has a listed label (any, with no list) and a
    score of at least ``minScore`` - "only results with a person ≥ 0.6"."""
    if result.status != "ok":
        return cfg.include_errors
    if result.detections is not None:
        return any(
            (not cfg.labels or d.label in cfg.labels) and d.score >= cfg.min_score
            for d in result.detections
        ) or (not cfg.labels and not cfg.min_score)
    top = result.predictions[0] if result.predictions else None
    if cfg.labels and (top is None or top.label not in cfg.labels):
        return False
    return not (cfg.min_score and (top is None or top.score < cfg.min_score))
