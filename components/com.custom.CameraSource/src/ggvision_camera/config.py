"""CameraSource's configuration: a typed model of the recipe's configuration (camelCase keys).

One process drives one camera or many: ``cameras`` is a list of ``{name, source, ...}`` entries,
each overriding the per-camera keys (``fps``, ``maxWidth``, ``maxHeight``, ``roi``, ``tasks``,
``maxInFlight``, ``ringName``) of the root; every other key (topics, transport, time-outs,
back-off, ring size) is shared. Without ``cameras`` the root's own ``cameraName``, ``source``,
``fps``, ... are the one camera, as before: :meth:`CameraConfig.camera_configs` gives each camera
its own flat :class:`CameraConfig` either way. Names are unique; each is the ``source`` of its
camera's requests.

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
    """A video file, played in a loop (``loop`` false: once; then the camera has ``ended``)."""

    type: Literal["video"] = "video"
    path: str = Field(min_length=1)
    loop: bool = True


class ImageFolderSource(_Model):
    """The images of a folder in name order, in a loop (``loop`` false: one pass); undecodable
    files are skipped."""

    type: Literal["folder"] = "folder"
    path: str = Field(min_length=1)
    loop: bool = True


SourceConfig = Annotated[
    SyntheticSource
    | V4L2Source
    | StreamSource
    | PiCameraSource
    | VideoFileSource
    | ImageFolderSource,
    Field(discriminator="type"),
]


class Roi(_Model):
    """A region of interest: the part of each frame that is sent, cropped before the frame is
    scaled to ``maxWidth`` x ``maxHeight``. Coordinates are fractions of the source frame's
    width and height (0..1, from the top-left corner), so they survive a change of resolution:
    ``{x: 0.5, y: 0, width: 0.5, height: 1}`` is the right half."""

    x: float = Field(0.0, ge=0.0, lt=1.0)
    y: float = Field(0.0, ge=0.0, lt=1.0)
    width: float = Field(1.0, gt=0.0, le=1.0)
    height: float = Field(1.0, gt=0.0, le=1.0)

    @property
    def whole(self) -> bool:
        return self.x == 0 and self.y == 0 and self.width == 1 and self.height == 1

    @model_validator(mode="after")
    def _inside(self) -> Roi:
        if self.x + self.width > 1.0 + 1e-9 or self.y + self.height > 1.0 + 1e-9:
            raise ValueError("roi must lie inside the frame (x + width <= 1, y + height <= 1)")
        return self


_RING_NAME = r"^(|[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63})$"


class CameraEntry(_Model):
    """One camera of ``cameras``: its name and source, and overrides of the root's per-camera
    keys (a key left out takes the root's value)."""

    name: str = Field(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="unique; the source of the camera's requests and results",
    )
    source: SourceConfig = Field(default_factory=SyntheticSource, description="as the root's")
    fps: float | None = Field(None, ge=0.0, le=1000.0, description="null: the root's")
    max_width: int | None = Field(None, ge=16, le=8192, description="null: the root's")
    max_height: int | None = Field(None, ge=16, le=8192, description="null: the root's")
    roi: Roi | None = Field(None, description="null: the root's")
    tasks: list[Task] | None = Field(
        None, min_length=1, max_length=2, description="null: the root's"
    )
    max_in_flight: int | None = Field(None, ge=1, le=64, description="null: the root's")
    ring_name: str | None = Field(
        None, pattern=_RING_NAME, description='null: "<root ringName>-<name>" (or a generated one)'
    )


# Keys of an entry that override the root's (same names at the root).
_OVERRIDES = ("fps", "max_width", "max_height", "roi", "tasks", "max_in_flight", "ring_name")
MAX_CAMERAS = 64


# --- the component -----------------------------------------------------------------------------
class CameraConfig(ComponentConfig):
    camera_name: str = Field("camera", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    source: SourceConfig = Field(default_factory=SyntheticSource)
    cameras: list[CameraEntry] = Field(
        default_factory=list,
        max_length=MAX_CAMERAS,
        description="several cameras in one process; empty: the root's cameraName and source",
    )
    fps: float = Field(5.0, ge=0.0, le=1000.0, description="target rate; 0 = as fast as possible")
    max_width: int = Field(1280, ge=16, le=8192, description="larger frames are scaled down")
    max_height: int = Field(720, ge=16, le=8192)
    roi: Roi = Field(default_factory=Roi, description="the part of each frame sent (fractions)")

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
    max_in_flight_total: int = Field(
        0,
        ge=0,
        le=4096,
        description="requests in flight over all the cameras together, handed out in turn; "
        "0 = no shared limit (each camera has its maxInFlight)",
    )
    result_timeout_seconds: float = Field(5.0, gt=0, le=600)
    reconnect_initial_seconds: float = Field(0.5, gt=0, le=600)
    reconnect_max_seconds: float = Field(30.0, gt=0, le=3600)

    transport: Literal["frame", "inline", "file"] = "frame"
    ring_name: str = Field("", pattern=_RING_NAME)
    ring_slots: int = Field(8, ge=2, le=4096)
    ring_directory: str = Field(str(DEFAULT_DIR), min_length=1)
    jpeg_quality: int = Field(85, ge=10, le=100)
    file_directory: str = ""
    file_keep: int = Field(16, ge=2, le=100_000)

    print_results: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> CameraConfig:
        if self.reconnect_max_seconds < self.reconnect_initial_seconds:
            raise ValueError("reconnectMaxSeconds must be at least reconnectInitialSeconds")
        names = [c.name for c in self.cameras]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"camera names must be unique: {', '.join(twice)} named twice")
        rings = [c.ring_name for c in self.camera_configs() if c.ring_name]
        twice = sorted({n for n in rings if rings.count(n) > 1})
        if twice:
            raise ValueError(f"ring names must be unique: {', '.join(twice)} used twice")
        for cam in self.camera_configs():
            where = f"camera {cam.camera_name}: " if self.cameras else ""
            try:
                cam._check_camera()
            except ValueError as exc:
                raise ValueError(f"{where}{exc}") from None
        return self

    def _check_camera(self) -> None:
        """The per-camera rules, on one camera's flat configuration."""
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

    def camera_configs(self) -> list[CameraConfig]:
        """One flat configuration per camera (``cameras`` empty: this one), in list order: the
        entry's name and source, its overrides, the root's value for the rest. With several
        cameras a root ``ringName`` is a prefix (``<ringName>-<name>``)."""
        if not self.cameras:
            return [self]
        flat = []
        for entry in self.cameras:
            update: dict[str, Any] = {
                "camera_name": entry.name,
                "source": entry.source,
                "cameras": [],
                "ring_name": f"{self.ring_name}-{entry.name}"[:64] if self.ring_name else "",
            }
            for key in _OVERRIDES:
                value = getattr(entry, key)
                if value is not None:
                    update[key] = value
            flat.append(self.model_copy(update=update))
        return flat

    @property
    def camera_names(self) -> list[str]:
        return [c.name for c in self.cameras] or [self.camera_name]

    @classmethod
    def unknown_keys(cls, raw: dict[str, Any]) -> list[str]:
        unknown = super().unknown_keys(raw) + _unknown_source_keys(raw.get("source"), "source")
        cameras = raw.get("cameras")
        for i, entry in enumerate(cameras if isinstance(cameras, list) else []):
            if isinstance(entry, dict):
                where = f"cameras[{i}]"
                unknown += [f"{where}.{k}" for k in sorted(set(entry) - known_keys(CameraEntry))]
                unknown += _unknown_source_keys(entry.get("source"), f"{where}.source")
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


def _unknown_source_keys(source: object, where: str) -> list[str]:
    if not isinstance(source, dict):
        return []
    model = _SOURCE_MODELS.get(str(source.get("type", "synthetic")))
    if model is None:
        return []
    return [f"{where}.{k}" for k in sorted(set(source) - known_keys(model))]
