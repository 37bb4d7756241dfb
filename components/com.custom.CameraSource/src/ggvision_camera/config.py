"""CameraSource's configuration: a typed model of the recipe's configuration (camelCase keys).

``source`` is a discriminated union keyed on ``type``: each frame source declares its own model.
The same model validates deployment updates before they apply (accept/reject with the reason).
Unknown keys, at the root or inside ``source``, are logged, not fatal: device configuration
survives upgrades, and a deployment that *merges* a new source type over the old one leaves the
old type's keys behind.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from ggvision.config import (
    ComponentConfig,
    ConfigModel,
    inference_topic_field,
    known_keys,
    publishes,
    result_topic_field,
    status_interval_field,
    status_topic_field,
    subscribes,
)
from ggvision.frames import DEFAULT_DIR

_Model = ConfigModel
Task = Literal["classify", "detect"]


# --- frame sources ---------------------------------------------------------------------------
class SyntheticSource(_Model):
    """A deterministic moving gradient with the frame number drawn on it (no camera needed)."""

    type: Literal["synthetic"] = "synthetic"
    width: int = Field(640, ge=16, le=8192)
    height: int = Field(480, ge=16, le=8192)


class V4L2Source(_Model):
    """A V4L2/USB camera through OpenCV: an index (0 = /dev/video0) or a device path."""

    type: Literal["v4l2"] = "v4l2"
    device: int | str = Field(0, description="index or path such as /dev/video0")
    width: int = Field(0, ge=0, le=8192, description="requested width; 0 = driver default")
    height: int = Field(0, ge=0, le=8192, description="requested height; 0 = driver default")
    fps: float = Field(0.0, ge=0.0, le=1000.0, description="requested rate; 0 = driver default")
    fourcc: str = Field("", pattern=r"^(|[ -~]{4})$", description="e.g. MJPG; empty = default")
    api: Literal["v4l2", "any"] = Field("v4l2", description="OpenCV capture API")


class StreamSource(_Model):
    """An RTSP or HTTP(S) stream (MJPEG, H.264, ...) through OpenCV's FFmpeg backend."""

    type: Literal["stream"] = "stream"
    url: str = Field(min_length=1, pattern=r"^(rtsp|rtsps|rtmp|http|https|udp|tcp)://")
    open_timeout_seconds: float = Field(10.0, gt=0, le=300)
    read_timeout_seconds: float = Field(10.0, gt=0, le=300)


class PiCameraSource(_Model):
    """A Raspberry Pi camera through picamera2 (from apt, not pip)."""

    type: Literal["picamera2"] = "picamera2"
    camera: int = Field(0, ge=0, le=16, description="camera number")
    width: int = Field(1280, ge=16, le=8192)
    height: int = Field(720, ge=16, le=8192)
    fps: float = Field(0.0, ge=0.0, le=1000.0, description="sensor frame rate; 0 = default")


class VideoFileSource(_Model):
    """A video file, played in a loop."""

    type: Literal["video"] = "video"
    path: str = Field(min_length=1)


class ImageFolderSource(_Model):
    """The images of a folder in name order, in a loop; undecodable files are skipped."""

    type: Literal["folder"] = "folder"
    path: str = Field(min_length=1)


SourceConfig = Annotated[
    SyntheticSource
    | V4L2Source
    | StreamSource
    | PiCameraSource
    | VideoFileSource
    | ImageFolderSource,
    Field(discriminator="type"),
]


# --- the component -----------------------------------------------------------------------------
class CameraConfig(ComponentConfig):
    camera_name: str = Field("camera", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    source: SourceConfig = Field(default_factory=SyntheticSource)
    fps: float = Field(5.0, ge=0.0, le=1000.0, description="target rate; 0 = as fast as possible")
    max_width: int = Field(1280, ge=16, le=8192, description="larger frames are scaled down")
    max_height: int = Field(720, ge=16, le=8192)

    inference_topic: str = inference_topic_field()
    tasks: list[Task] = Field(
        default_factory=lambda: list[Task](["classify"]),
        min_length=1,
        max_length=2,
        description="what each frame is sent for: classify (to inferenceTopic), detect (to "
        "detectTopic) or both (one frame, one request per task)",
    )
    detect_topic: str = Field(
        "local/detect",
        min_length=1,
        description="local topic of the detection requests (com.custom.ObjectDetector)",
        json_schema_extra=publishes(),
    )
    result_topic: str = result_topic_field()
    consumer_status_topics: list[str] = Field(
        default_factory=lambda: [
            "local/status/com.custom.ImageClassifier",
            "local/status/com.custom.ObjectDetector",
        ],
        max_length=8,
        description="status topics of the consumers (classifier, detector): their reports say "
        "the frame plane their model takes, which transport frame then writes beside each "
        "frame at the model's input size; empty: full frames only",
        json_schema_extra=subscribes(),
    )
    status_topic: str = status_topic_field("com.custom.CameraSource")
    status_interval_seconds: float = status_interval_field()

    max_in_flight: int = Field(2, ge=1, le=64)
    result_timeout_seconds: float = Field(5.0, gt=0, le=600)
    reconnect_initial_seconds: float = Field(0.5, gt=0, le=600)
    reconnect_max_seconds: float = Field(30.0, gt=0, le=3600)

    transport: Literal["frame", "inline", "file"] = "frame"
    ring_name: str = Field("", pattern=r"^(|[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63})$")
    ring_slots: int = Field(8, ge=2, le=4096)
    ring_directory: str = Field(str(DEFAULT_DIR), min_length=1)
    jpeg_quality: int = Field(85, ge=10, le=100)
    file_directory: str = ""
    file_keep: int = Field(16, ge=2, le=100_000)

    print_results: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> CameraConfig:
        # A frame still waiting for its answer must not be overwritten by the next ones.
        if self.transport == "frame" and self.ring_slots <= self.max_in_flight:
            raise ValueError("ringSlots must be larger than maxInFlight")
        if self.transport == "file":
            if not self.file_directory:
                raise ValueError("transport file needs fileDirectory")
            if self.file_keep <= self.max_in_flight:
                raise ValueError("fileKeep must be larger than maxInFlight")
        if len(set(self.tasks)) != len(self.tasks):
            raise ValueError("tasks names a task twice")
        if self.reconnect_max_seconds < self.reconnect_initial_seconds:
            raise ValueError("reconnectMaxSeconds must be at least reconnectInitialSeconds")
        return self

    @classmethod
    def unknown_keys(cls, raw: dict[str, Any]) -> list[str]:
        unknown = super().unknown_keys(raw)
        source = raw.get("source")
        if isinstance(source, dict):
            model = _SOURCE_MODELS.get(str(source.get("type", "synthetic")))
            if model is not None:
                unknown += [f"source.{k}" for k in sorted(set(source) - known_keys(model))]
        return unknown

    def request_topics(self) -> list[str]:
        """The topics each frame's requests go to, one per task, in ``tasks`` order."""
        topic = {"classify": self.inference_topic, "detect": self.detect_topic}
        return list(dict.fromkeys(topic[t] for t in self.tasks))

    @property
    def max_frame_bytes(self) -> int:
        return self.max_width * self.max_height * 3


_SOURCE_MODELS: dict[str, type[_Model]] = {
    m.model_fields["type"].default: m
    for m in (
        SyntheticSource,
        V4L2Source,
        StreamSource,
        PiCameraSource,
        VideoFileSource,
        ImageFolderSource,
    )
}
SOURCE_TYPES = frozenset(_SOURCE_MODELS)
