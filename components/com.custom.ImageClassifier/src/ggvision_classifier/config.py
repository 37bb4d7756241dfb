"""The classifier's configuration: a typed model of the recipe's configuration (camelCase keys).

Validation, unknown keys and errors: :class:`ggvision.config.ComponentConfig`.
"""

from __future__ import annotations

import os
from typing import Literal

from pydantic import Field

from ggvision.config import ComponentConfig, publishes, subscribes


class ClassifierConfig(ComponentConfig):
    inference_topic: str = Field("local/inference", min_length=1, json_schema_extra=subscribes())
    result_topic: str = Field("local/result", min_length=1, json_schema_extra=publishes())
    model_key: str = Field("tflite-int8", min_length=1, description="variant dir in the store")
    model_store_path: str = Field("", description="overrides $GGV_MODEL_STORE when set")
    backend: Literal["", "tflite", "onnx", "torch", "dlr", "fake"] = ""
    threads: int = Field(
        2, ge=0, le=64, description="inference threads; 0 = auto (one per core but one, at most 4)"
    )
    top_k: int = Field(5, ge=1, le=1000)
    threshold: float = Field(0.0, ge=0.0, le=1.0)
    allowed_directories: list[str] = Field(default_factory=list)
    queue_size: int = Field(8, ge=1, le=10_000)
    max_image_bytes: int = Field(20 * 1024 * 1024, ge=1024)
    max_image_pixels: int = Field(40_000_000, ge=1024)
    decode: Literal["accurate", "fast"] = "accurate"
    frame_directory: str = "/dev/shm"  # noqa: S108 - POSIX shared memory, the frame ring
    delegate: str = ""
    delegate_fallback: Literal["error", "cpu"] = "error"

    @property
    def inference_threads(self) -> int:
        """``threads``, with 0 resolved: leave a core to capture and preprocessing, which run
        beside inference in the pipeline."""
        if self.threads:
            return self.threads
        return max(1, min(4, (os.cpu_count() or 1) - 1))

    def model_fields_changed(self, other: ClassifierConfig) -> bool:
        """True when a change needs a new model (key, store, backend, threads, delegate)."""
        keys = (
            "model_key",
            "model_store_path",
            "backend",
            "threads",
            "delegate",
            "delegate_fallback",
        )
        return any(getattr(self, k) != getattr(other, k) for k in keys)
