"""The ``uplink`` section of a component's configuration: what goes to IoT Core, and the bounds
of the queue, the outbox and the link."""

from __future__ import annotations

from pydantic import Field

from ggvision.config import ConfigModel, publishes_to_iot_core


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
        default_factory=list, description="only results whose top label is listed (empty: any)"
    )
    min_score: float = Field(0.0, ge=0.0, le=1.0, description="only results whose top score ≥")
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
