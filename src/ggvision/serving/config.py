"""The configuration every model component shares (the classifier's, the detector's): where
results go, how the model is found and run, the image limits, the queue, status and uplink.

A component's own model (``ClassifierConfig``, ``DetectorConfig``) adds its request topic, its
model key, its answer limits (:meth:`ServingConfig.answer_defaults`) and task options, its
status and command topics.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar, Literal

from pydantic import Field

from ggvision.config import (
    ComponentConfig,
    publishes,
    publishes_to_iot_core,
    status_interval_field,
    status_topic_field,
    subscribes_to_iot_core,
)
from ggvision.uplink import UplinkConfig


class ServingConfig(ComponentConfig):
    # The command topic the recipe pre-authorizes when commandTopic is empty ({thing}: the
    # thing name); each component sets its own.
    DEFAULT_COMMAND_TOPIC: ClassVar[str] = ""

    result_topic: str = Field("local/result", min_length=1, json_schema_extra=publishes())
    # Each component gives its own default (its store's default variant).
    model_key: str = Field("", min_length=1, description="variant dir in the store")
    model_store_path: str = Field("", description="overrides $GGV_MODEL_STORE when set")
    # modelKey auto (ggvision.serving.models.auto): the fastest variant agreeing with the float
    # reference, measured on this machine and cached in the work directory.
    auto_seconds: float = Field(
        3.0, gt=0.0, le=120.0, description="modelKey auto: seconds each variant is timed"
    )
    auto_min_agreement: float = Field(
        0.99,
        ge=0.0,
        le=1.0,
        description="modelKey auto: the least top-1 agreement with the float reference on the "
        "store's reference photos",
    )
    backend: Literal["", "tflite", "onnx", "torch", "dlr", "fake"] = ""
    model_store_layout: Literal["ggvision", "aws-dlr"] = Field(
        "ggvision",
        description="ggvision: modelKey names a variant dir with manifest.json; aws-dlr: AWS's "
        "DLR model store, modelResourceKey names the dir by architecture (docs/dlr.md)",
    )
    model_resource_key: dict[str, str] = Field(
        default_factory=dict,
        description="aws-dlr layout: machine architecture (armv7l, aarch64, x86_64) -> model dir",
    )
    threads: int = Field(
        2, ge=0, le=64, description="inference threads; 0 = auto (one per core but one, at most 4)"
    )
    allowed_directories: list[str] = Field(default_factory=list)
    queue_size: int = Field(
        256,
        ge=1,
        le=10_000,
        description="requests waiting, at most (a backstop: queueMaxBytes and maxQueueDelayMs "
        "are the bounds that matter)",
    )
    queue_max_bytes: int = Field(
        64 * 1024 * 1024,
        ge=0,
        description="bytes of images the waiting requests may hold together (inline image, frame "
        "slot or file size); over it a request is answered OVERLOADED, a frame drops the oldest "
        "frames; one request always fits an empty queue; 0: no bound",
    )
    max_queue_delay_ms: int = Field(
        10_000,
        ge=0,
        le=3_600_000,
        description="a request that waited longer in the queue is answered OVERLOADED "
        '("deadline exceeded") instead of being served stale; 0: no deadline',
    )
    max_batch: int = Field(
        0,
        ge=0,
        le=64,
        description="micro-batching: requests waiting together run as one inference, at most "
        "this many (Triton's max_batch_size); 1: off; 0: the backend's measured best (README: "
        "Micro-batching); a model whose input is fixed to batch 1 always runs unbatched",
    )
    max_batch_delay_ms: float = Field(
        0.0,
        ge=0.0,
        le=10_000.0,
        description="how long a batch may wait after its oldest request arrived for more to "
        "come (Triton's max_queue_delay_microseconds); 0: only the requests already waiting",
    )
    max_sources: int = Field(
        64,
        ge=1,
        le=4096,
        description="request sources (cameras) with their own queue, served in turn, and their "
        "own status figures; the sources past it share one queue, '(other)', until a source "
        "idle for a minute makes room",
    )
    recent_ids: int = Field(
        1024,
        ge=0,
        le=100_000,
        description="ok answers remembered by request id: a retry with the same id is answered "
        "again without running the model (0: none; a retry of a request in flight is always "
        "answered once)",
    )
    recent_ids_seconds: float = Field(
        60.0, gt=0.0, le=86_400.0, description="how long an answer is remembered"
    )
    max_image_bytes: int = Field(20 * 1024 * 1024, ge=1024)
    max_image_pixels: int = Field(40_000_000, ge=1024)
    max_decode_pixels: int = Field(
        16_000_000,
        ge=0,
        description="a larger JPEG is decoded at 1/2, 1/4 or 1/8 scale (DCT domain) to fit, its "
        "short side kept >= 1024; 0: always full size",
    )
    decode: Literal["accurate", "fast"] = "accurate"
    frame_directory: str = "/dev/shm"  # noqa: S108 # POSIX shm: the frame ring # nosec B108
    delegate: str = Field(
        "",
        description="TFLite delegate library; a *_edgetpu.tflite model gets libedgetpu.so.1",
    )
    delegate_options: dict[str, str] = Field(
        default_factory=dict, description='delegate options, e.g. {"device": "usb"} (Edge TPU)'
    )
    delegate_fallback: Literal["error", "cpu"] = Field(
        "error", description="when the delegate cannot be loaded: refuse the model, or use the CPU"
    )
    # Each component gives its own default (local/status/<its name>).
    status_topic: str = status_topic_field("<component>")
    status_interval_seconds: float = status_interval_field()
    uplink: UplinkConfig = Field(
        default_factory=UplinkConfig, description="results to AWS IoT Core (see README: Uplink)"
    )
    # Each component declares it with the topic its recipe pre-authorizes.
    command_topic: str = Field(
        "",
        description="IoT Core topic of model-switch commands ({thing}: the thing name); empty: off",
        json_schema_extra=subscribes_to_iot_core(),
    )
    command_reply_topic: str = Field(
        "",
        description="IoT Core topic of the answers to commands; empty: <commandTopic>/reply",
        json_schema_extra=publishes_to_iot_core(),
    )

    # --- what each component says ----------------------------------------------------------------
    def listen_topic(self) -> str:
        """The local topic of this component's requests."""
        raise NotImplementedError

    def answer_defaults(self) -> tuple[int, float]:
        """(top_k, threshold) for a request that gives none: a classifier's best classes and
        minimum probability, a detector's most boxes and minimum score."""
        raise NotImplementedError

    def task_options(self) -> dict[str, Any]:
        """Options of the task's answer (a detector's label allow-list); none by default."""
        return {}

    # --- shared ----------------------------------------------------------------------------------
    def extra_grants(self) -> set[tuple[str, str, str]]:
        """The derived reply topic (``<commandTopic>/reply``) when none is set."""
        if self.command_reply_topic:
            return set()
        command = self.command_topic or self.DEFAULT_COMMAND_TOPIC
        if not command:
            return set()
        reply = f"{command}/reply"
        return {("aws.greengrass.ipc.mqttproxy", "aws.greengrass#PublishToIoTCore", reply)}

    @property
    def inference_threads(self) -> int:
        """``threads``, with 0 resolved: leave a core to capture and preprocessing, which run
        beside inference in the pipeline."""
        if self.threads:
            return self.threads
        return max(1, min(4, (os.cpu_count() or 1) - 1))

    def model_identity(self) -> tuple[Any, ...]:
        """What selects and loads the model (key, store, layout, backend, threads, delegate):
        two configurations with the same identity serve with the same loaded model."""
        return (
            self.model_key,
            self.model_store_path,
            self.model_store_layout,
            tuple(sorted(self.model_resource_key.items())),
            self.backend,
            self.threads,
            self.delegate,
            tuple(sorted(self.delegate_options.items())),
            self.delegate_fallback,
        )

    def model_fields_changed(self, other: ServingConfig) -> bool:
        """True when a change needs a new model (see :meth:`model_identity`)."""
        return self.model_identity() != other.model_identity()
