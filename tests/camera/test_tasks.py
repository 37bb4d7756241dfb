"""A camera's frames go to classification, detection or both (``tasks``): one frame, one
request per task with the same image, each counted and answered on its own."""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any

import numpy as np
import pytest
from ggvision_camera.config import CameraConfig
from ggvision_camera.flow import FramePublisher
from ggvision_camera.transport import InlineJpegTransport

from ggvision.errors import ConfigError


class RecordingBus:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def publish_json(self, topic: str, obj: dict[str, Any]) -> Future[Any]:
        self.sent.append((topic, obj))
        fut: Future[Any] = Future()
        fut.set_result(None)
        return fut


@pytest.mark.parametrize(
    ("tasks", "topics"),
    [
        (None, ["local/inference"]),
        (["classify"], ["local/inference"]),
        (["detect"], ["local/detect"]),
        (["detect", "classify"], ["local/detect", "local/inference"]),
    ],
)
def test_tasks_pick_the_request_topics(tasks: list[str] | None, topics: list[str]) -> None:
    raw: dict[str, Any] = {} if tasks is None else {"tasks": tasks}
    assert CameraConfig.from_raw(raw).request_topics() == topics


@pytest.mark.parametrize("tasks", [[], ["classify", "classify"], ["segment"]])
def test_bad_tasks_are_refused(tasks: list[str]) -> None:
    with pytest.raises(ConfigError) as err:
        CameraConfig.from_raw({"tasks": tasks})
    assert "tasks" in str(err.value)


def test_both_tasks_one_frame_two_requests_counted_apart() -> None:
    bus = RecordingBus()
    pub = FramePublisher(
        bus,  # type: ignore[arg-type]
        InlineJpegTransport(quality=80),
        camera="cam",
        topic=["local/inference", "local/detect"],
        max_in_flight=2,
        timeout_s=5.0,
    )
    frame = np.zeros((24, 32, 3), np.uint8)
    assert pub.offer(frame, 0, 0.0)
    (t1, r1), (t2, r2) = bus.sent
    assert (t1, t2) == ("local/inference", "local/detect")
    assert r1["image"] == r2["image"] and r1["id"] != r2["id"]
    assert r1["source"] == r2["source"] == "cam"
    # Both requests of the frame are in flight: no room for the next frame's two.
    assert not pub.offer(frame, 1, 0.0)
    assert pub.snapshot()["dropped"] == 1
    pub.on_result("local/result", {"id": r1["id"], "status": "ok", "predictions": []})
    assert not pub.has_room()
    detect = {"id": r2["id"], "status": "ok", "task": "detect", "detections": []}
    pub.on_result("local/result", detect)
    assert pub.offer(frame, 2, 0.0)
    snap = pub.snapshot()
    assert snap["requests"]["sent"] == 4 and snap["ok"] == 2 and snap["in_flight"] == 2
