"""The detector's configuration: a typed model of the recipe's configuration (camelCase keys).

What every model component shares (results, model store and runtime, image limits, queue,
status, uplink, commands): :class:`ggvision.serving.config.ServingConfig`.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from ggvision.config import status_topic_field, subscribes, subscribes_to_iot_core
from ggvision.serving.config import ServingConfig

# The detection model store's default variant (its index.json "default": the fastest person
# detector measured).
DEFAULT_MODEL_KEY = "ssdlite-person-tflite-int8"
# Model-switch commands: the topic the recipe pre-authorizes ({thing}: the thing name).
DEFAULT_COMMAND_TOPIC = "ggvision/{thing}/detector/command"


class DetectorConfig(ServingConfig):
    DEFAULT_COMMAND_TOPIC: ClassVar[str] = DEFAULT_COMMAND_TOPIC

    request_topic: str = Field(
        "local/detect",
        min_length=1,
        description="local topic of the detection requests",
        json_schema_extra=subscribes(),
    )
    model_key: str = Field(
        DEFAULT_MODEL_KEY, min_length=1, description="variant dir in the detection model store"
    )
    model_store_layout: Literal["ggvision"] = Field(
        "ggvision", description="ggvision: modelKey names a variant dir with manifest.json"
    )
    score_threshold: float = Field(
        0.5, ge=0.0, le=1.0, description="boxes scoring less are not reported"
    )
    max_detections: int = Field(
        20, ge=1, le=1000, description="at most this many boxes, best first"
    )
    labels: list[str] = Field(
        default_factory=list, description="report only these labels; empty: every label"
    )
    status_topic: str = status_topic_field("com.custom.ObjectDetector")
    command_topic: str = Field(
        "",
        description="IoT Core topic of model-switch commands ({thing}: the thing name); empty: off",
        # The recipe pre-authorizes the documented topic, so a deployment can switch it on.
        json_schema_extra=subscribes_to_iot_core(when_empty=DEFAULT_COMMAND_TOPIC),
    )

    def listen_topic(self) -> str:
        return self.request_topic

    def answer_defaults(self) -> tuple[int, float]:
        return self.max_detections, self.score_threshold

    def task_options(self) -> dict[str, Any]:
        return {"labels": list(self.labels)}
