"""CameraSource as a real ``python -m ggvision_camera`` process on the IPC core, with real
clients around it: a slow consumer process, a listener agent, and the real classifier."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from ggvision.testing.agent import AgentProcess
from ggvision.testing.harness import CoreThread, pubsub_policy
from tests.camera.conftest import (
    FRAMES_PER_PHOTO,
    NAME,
    REPO,
    VIDEO_PHOTOS,
    CameraProcess,
    collect,
)

STATUS = "local/status/com.custom.CameraSource"
CATS = {"tabby", "tiger cat", "Egyptian cat"}


class SlowConsumer:
    def __init__(self, core: CoreThread, delay_ms: int, frames: Path) -> None:
        env = core.component_env(
            "com.test.SlowConsumer",
            pubsub_policy(publish=["local/result"], subscribe=["local/inference"]),
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.camera.slow_consumer", str(delay_ms), str(frames)],
            env=env,
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        assert json.loads(self.proc.stdout.readline()) == {"ready": True}

    def summary(self) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.close()
        out: dict[str, Any] = json.loads(self.proc.stdout.readline())
        self.proc.wait(10)
        return out

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def test_flow_control_under_a_slow_consumer_drops_frames_instead_of_queueing(
    core: CoreThread, listener: AgentProcess, frames: Path
) -> None:
    statuses = listener("subscribe", topic=STATUS)["sub"]
    results = listener("subscribe", topic="local/result")["sub"]
    consumer = SlowConsumer(core, delay_ms=40, frames=frames)
    overrides = {
        "source": {"type": "synthetic", "width": 320, "height": 240},
        "fps": 200,
        "maxInFlight": 2,
        "ringDirectory": str(frames),
        "ringSlots": 4,
        "statusIntervalSeconds": 0.5,
    }
    try:
        with CameraProcess(core, overrides) as camera:
            camera.wait_running()
            reports = collect(listener, statuses, time.monotonic() + 3.0)
            assert camera.stop() == 0
            reports += collect(listener, statuses, time.monotonic() + 0.5)
            rings = list(frames.iterdir())
        answers = collect(listener, results, time.monotonic() + 0.3)
        summary = consumer.summary()
    finally:
        consumer.kill()

    assert len(reports) >= 5, reports
    assert all(s["in_flight"] <= 2 and s["in_flight_peak"] <= 2 for s in reports)
    # The last report comes from the stopped camera, after the answers still due.
    assert [s["state"] for s in reports].count("stopped") == 1
    *running, last = reports
    assert last["state"] == "stopped"
    # The camera captured far more than a 40 ms consumer can take: the rest was dropped.
    assert last["dropped"] > last["sent"] > 10
    assert last["captured"] == last["sent"] + last["dropped"]
    assert running[-1]["fps"]["dropped"] > 0
    # Every request was answered exactly once, none was lost, nothing queued beyond the limit.
    assert last["answered"] == last["ok"] == last["sent"]
    assert (last["lost"], last["late"], last["errors"]) == (0, 0, {})
    assert summary["peak"] <= 2
    assert summary["stale"] == []
    assert len(summary["received"]) == len(set(summary["received"])) == last["sent"]
    assert Counter(summary["answered"]) == Counter(summary["received"])
    assert sorted(a["id"] for a in answers) == sorted(summary["received"])
    assert rings == []  # the ring was unlinked on SIGTERM


def test_a_camera_that_is_not_there_keeps_the_component_running(
    core: CoreThread, listener: AgentProcess, frames: Path
) -> None:
    statuses = listener("subscribe", topic=STATUS)["sub"]
    overrides = {
        "source": {"type": "v4l2", "device": "/dev/video77"},
        "ringDirectory": str(frames),
        "statusIntervalSeconds": 0.3,
        "reconnectInitialSeconds": 0.05,
        "reconnectMaxSeconds": 0.2,
    }
    with CameraProcess(core, overrides) as camera:
        camera.wait_running()
        seen = collect(listener, statuses, time.monotonic() + 1.5)
        assert camera.proc.poll() is None
        assert camera.stop() == 0
        logs = camera.logs()
    assert seen and all(s["state"] == "reconnecting" for s in seen)
    assert seen[-1]["captured"] == 0
    lost = [r for r in logs if r["event"] == "camera.reconnecting"]
    assert len(lost) == 1, "a state change is logged once, not once per attempt"
    assert "no such device: /dev/video77" in lost[0]["message"]


def test_a_deployment_is_validated_then_rebuilds_the_running_camera(
    core: CoreThread, listener: AgentProcess, frames: Path, media: Path
) -> None:
    statuses = listener("subscribe", topic=STATUS)["sub"]
    overrides = {"ringDirectory": str(frames), "statusIntervalSeconds": 0.2, "fps": 20}
    with CameraProcess(core, overrides) as camera:
        camera.wait_running()
        rejected = core.deploy({NAME: {"MERGE": {"maxInFlight": 0}}})
        assert rejected.status == "FAILED" and "maxInFlight" in rejected.message
        # Merged over the default synthetic source: its width/height stay behind, harmlessly.
        video = {"type": "video", "path": str(media / "photos.mp4")}
        accepted = core.deploy({NAME: {"MERGE": {"source": video, "cameraName": "door"}}})
        assert accepted.status == "SUCCEEDED", accepted.message
        deadline = time.monotonic() + 5
        door: list[dict[str, Any]] = []
        while not door and time.monotonic() < deadline:
            reports = collect(listener, statuses, time.monotonic() + 0.3)
            door = [s for s in reports if s["camera"] == "door" and s["sent"] > 0]
        assert camera.proc.poll() is None
        rings = sorted(p.name for p in frames.iterdir())
        assert camera.stop() == 0
        logs = camera.logs()
    assert door, "the new configuration never reported"
    assert door[-1]["source"] == f"video {media / 'photos.mp4'}"
    assert door[-1]["state"] == "streaming"
    assert len(rings) == 1 and rings[0].startswith("ggv-door-")  # the old ring is gone
    assert list(frames.iterdir()) == []
    assert any(r["event"] == "config.unknown_keys" for r in logs)
    assert any(r["event"] == "camera.reconfigured" for r in logs)


def test_end_to_end_video_of_photos_through_the_real_classifier(
    core: CoreThread, listener: AgentProcess, frames: Path, media: Path, store: Path
) -> None:
    from tests.classifier.test_service import start_classifier

    results = listener("subscribe", topic="local/result")["sub"]
    classifier = start_classifier(
        core, store, {"modelKey": "tflite-int8", "frameDirectory": str(frames), "queueSize": 4}
    )
    try:
        assert core.state_of("com.custom.ImageClassifier") == "RUNNING"
        overrides = {
            "source": {"type": "video", "path": str(media / "photos.mp4")},
            "fps": 0,
            "maxInFlight": 2,
            "ringDirectory": str(frames),
            "printResults": True,
        }
        with CameraProcess(core, overrides) as camera:
            camera.wait_running()
            got = collect(listener, results, time.monotonic() + 3.0)
            assert camera.stop() == 0
            logs = camera.logs()
    finally:
        classifier.terminate()
        classifier.wait(15)

    assert len(got) >= 2 * len(VIDEO_PHOTOS) * FRAMES_PER_PHOTO  # the loop came round
    assert all(r["status"] == "ok" and r["source"] == "camera" for r in got), got[:3]
    by_photo: dict[str, list[str]] = {}
    for r in got:
        index = int(r["id"].rsplit("-", 1)[1])  # the capture count, from 1
        name = VIDEO_PHOTOS[
            ((index - 1) % (len(VIDEO_PHOTOS) * FRAMES_PER_PHOTO)) // FRAMES_PER_PHOTO
        ]
        by_photo.setdefault(name, []).append(r["predictions"][0]["label"])
    assert by_photo["chelsea"] and set(by_photo["chelsea"]) <= CATS, by_photo
    assert not set(by_photo["coffee"]) & CATS
    printed = [r for r in logs if r["event"] == "camera.result"]
    assert printed and all(r["label"] for r in printed)
