"""LiveView's configuration: a typed model of the recipe's configuration (camelCase keys).

Read-only by design: the live view subscribes to what it shows and publishes nothing. A bind
address that is not loopback needs a ``token`` (the page, the stream and ``/metrics`` then ask
for it; ``/healthz`` never does and says nothing but "ok").
"""

from __future__ import annotations

import ipaddress

from pydantic import Field, model_validator

from ggvision.config import ComponentConfig, subscribes
from ggvision.frames import DEFAULT_DIR

DEFAULT_STATUS_TOPICS = (
    "local/status/com.custom.CameraSource",
    "local/status/com.custom.ImageClassifier",
)


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and ``localhost``; anything else (0.0.0.0 included) is not."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class LiveViewConfig(ComponentConfig):
    host: str = Field("127.0.0.1", min_length=1, max_length=255, description="bind address")
    port: int = Field(8080, ge=0, le=65535, description="TCP port; 0 = any free one")
    token: str = Field(
        "",
        max_length=256,
        description="required from viewers (?token= or Authorization: Bearer) when set; "
        "must be set when host is not loopback",
    )
    inference_topic: str = Field(
        "local/inference",
        min_length=1,
        description="where the cameras' requests name their frames (ring, slot, seq)",
        json_schema_extra=subscribes(),
    )
    result_topic: str = Field(
        "local/result",
        min_length=1,
        description="the answers drawn on the frames",
        json_schema_extra=subscribes(),
    )
    status_topics: tuple[str, ...] = Field(
        DEFAULT_STATUS_TOPICS,
        description="status reports shown in the side panel and on /metrics",
        json_schema_extra=subscribes(),
    )
    frame_directory: str = Field(str(DEFAULT_DIR), min_length=1)
    stale_after_seconds: float = Field(
        30.0, gt=0, le=86400, description="a component without a status this long is down"
    )
    jpeg_quality: int = Field(80, ge=10, le=100)
    max_viewers: int = Field(8, ge=1, le=256, description="live streams served at once")
    max_cameras: int = Field(16, ge=1, le=256)

    def extra_grants(self) -> set[tuple[str, str, str]]:
        """The detector's requests and status, pre-authorized so a deployment (``make run
        TASK=detect``) can point the view at the detector instead of the classifier."""
        subscribe = ("aws.greengrass.ipc.pubsub", "aws.greengrass#SubscribeToTopic")
        return {
            (*subscribe, "local/detect"),
            (*subscribe, "local/status/com.custom.ObjectDetector"),
        }

    @model_validator(mode="after")
    def _token_off_loopback(self) -> LiveViewConfig:
        if not is_loopback(self.host) and not self.token:
            raise ValueError(f"host {self.host} is not loopback: set a token")
        if self.token and len(self.token) < 16:
            raise ValueError("token must be at least 16 characters")
        return self
