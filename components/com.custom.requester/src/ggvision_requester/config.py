"""The requester's configuration: a typed model of the recipe's configuration (camelCase keys).

Validation, unknown keys and errors: :class:`ggvision.config.ComponentConfig`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from ggvision.config import (
    ComponentConfig,
    inference_topic_field,
    result_topic_field,
    status_interval_field,
    status_topic_field,
)

# Changing these needs a restart (new subscriptions, new output files); the rest apply live.
RESTART_FIELDS = ("inference_topic", "result_topic", "status_topic", "output_jsonl", "output_csv")


class RequesterConfig(ComponentConfig):
    inference_topic: str = inference_topic_field()
    result_topic: str = result_topic_field()
    status_topic: str = status_topic_field("com.custom.requester")
    status_interval_seconds: float = status_interval_field()
    image_directory: str = Field("", description="folder whose images are sent, sorted by name")
    images: list[str] = Field(default_factory=list, description="explicit image files")
    extensions: list[str] = Field(
        default_factory=lambda: ["jpg", "jpeg", "png", "bmp", "webp"], min_length=1
    )
    transport: Literal["path", "inline"] = Field(
        "path", description="inline: base64 in the request for files up to 128 KB, else path"
    )
    request_form: Literal["contract", "seed"] = Field(
        "contract", description='seed: the original {"image_dir", "fname"} request'
    )
    top_k: int = Field(0, ge=0, le=1000, description="0: the classifier's configured topK")
    source: str = Field("com.custom.requester", max_length=256)
    max_in_flight: int = Field(4, ge=1, le=1024)
    timeout_s: float = Field(10.0, gt=0.0, le=3600.0)
    retries: int = Field(2, ge=0, le=20)
    backoff_s: float = Field(0.5, ge=0.0, le=600.0, description="first retry delay, doubled")
    max_backoff_s: float = Field(8.0, ge=0.0, le=3600.0)
    repeat: int = Field(1, ge=0, description="passes over the images; 0: until stopped")
    interval_s: float = Field(0.0, ge=0.0, le=86400.0, description="pause between requests")
    output_jsonl: str = ""
    output_csv: str = ""
    annotate_directory: str = ""

    @field_validator("extensions")
    @classmethod
    def _normalise_extensions(cls, value: list[str]) -> list[str]:
        out = [e.lower().lstrip(".") for e in value]
        if not all(out):
            raise ValueError("extensions must be non-empty")
        return out

    def restart_fields_changed(self, other: RequesterConfig) -> list[str]:
        """The fields that differ from ``other`` and only take effect after a restart."""
        return [k for k in RESTART_FIELDS if getattr(self, k) != getattr(other, k)]
