"""The classifier's configuration: a typed model of the recipe's configuration (camelCase keys).

What every model component shares (results, model store and runtime, image limits, queue,
status, uplink, commands): :class:`ggvision.serving.config.ServingConfig`. Validation, unknown
keys and errors: :class:`ggvision.config.ComponentConfig`.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from ggvision.config import status_topic_field, subscribes, subscribes_to_iot_core
from ggvision.serving.config import ServingConfig
from ggvision.serving.learning import LearningConfig

# Model-switch commands: the topic the recipe pre-authorizes ({thing}: the thing name).
DEFAULT_COMMAND_TOPIC = "ggvision/{thing}/classifier/command"


class ClassifierConfig(ServingConfig):
    DEFAULT_COMMAND_TOPIC: ClassVar[str] = DEFAULT_COMMAND_TOPIC

    inference_topic: str = Field("local/inference", min_length=1, json_schema_extra=subscribes())
    model_key: str = Field(
        "tflite-int8",
        min_length=1,
        description="variant dir in the store; auto: the fastest variant agreeing with the "
        "float reference, measured on this machine (cached in the work directory)",
    )
    model_resource_key: dict[str, str] = Field(
        default_factory=lambda: {
            arch: f"DLR-resnet50-{arch}-cpu-ImageClassification"
            for arch in ("armv7l", "aarch64", "x86_64")
        },
        description="aws-dlr layout: machine architecture (armv7l, aarch64, x86_64) -> model "
        "dir; the default is AWS's ResNet-50 store",
    )
    top_k: int = Field(5, ge=1, le=1000)
    threshold: float = Field(0.0, ge=0.0, le=1.0)
    status_topic: str = status_topic_field("com.custom.ImageClassifier")
    learning: LearningConfig = Field(
        default_factory=LearningConfig,
        description="live learning over IPC (an embedding model only; docs/imprinting.md)",
    )
    command_topic: str = Field(
        "",
        description="IoT Core topic of model-switch commands ({thing}: the thing name); empty: off",
        # The recipe pre-authorizes the documented topic, so a deployment can switch it on.
        json_schema_extra=subscribes_to_iot_core(when_empty=DEFAULT_COMMAND_TOPIC),
    )

    def listen_topic(self) -> str:
        return self.inference_topic

    def answer_defaults(self) -> tuple[int, float]:
        return self.top_k, self.threshold
