"""CameraSource on a core with the ``lite`` profile (Greengrass nucleus lite's limits): the frame
transport fits (a request is a slot reference of ~200 bytes) and is classified end to end; the
inline transport (a JPEG per request, tens of KB) cannot fit Lite's 10,000-byte messages, so
the camera refuses to start and says why, instead of losing its connection on the first frame."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ggvision.testing.agent import AgentProcess
from ggvision.testing.harness import CoreThread, pubsub_policy
from tests.camera.conftest import CameraProcess, collect
from tests.classifier.conftest import default_store

STATUS = "local/status/com.custom.CameraSource"


@pytest.fixture
def lite() -> Iterator[CoreThread]:
    with CoreThread(profile="lite") as core:
        yield core


def test_the_inline_transport_refuses_to_start_on_lite_and_says_why(
    lite: CoreThread, media: Path
) -> None:
    overrides = {"source": {"type": "video", "path": str(media / "photos.mp4")}}
    with CameraProcess(lite, {**overrides, "transport": "inline"}) as camera:
        assert camera.proc.wait(30) != 0
        failed = [r for r in camera.logs() if r["event"] == "camera.start_failed"]
    assert failed, "no start_failed log line"
    message = failed[0]["message"]
    assert "transport inline cannot run here" in message
    assert "at most 10000 bytes" in message and "use transport frame" in message


def test_frames_are_classified_end_to_end_on_lite(
    lite: CoreThread, media: Path, tmp_path: Path
) -> None:
    from tests.classifier.test_service import start_classifier

    frames = tmp_path / "frames"
    frames.mkdir()
    listener = AgentProcess(
        lite.component_env("com.test.Listener", pubsub_policy(subscribe=["local/*"]))
    )
    results = listener("subscribe", topic="local/result")["sub"]
    status = listener("subscribe", topic=STATUS)["sub"]
    classifier = start_classifier(
        lite, default_store(), {"frameDirectory": str(frames), "statusIntervalSeconds": 0.5}
    )
    try:
        assert lite.state_of("com.custom.ImageClassifier") == "RUNNING"
        overrides = {
            "source": {"type": "video", "path": str(media / "photos.mp4")},
            "fps": 0,
            "ringDirectory": str(frames),
            "statusIntervalSeconds": 0.5,
        }
        with CameraProcess(lite, overrides) as camera:
            camera.wait_running()
            got = collect(listener, results, time.monotonic() + 3.0)
            reports = listener("events", sub=status, n=1, timeout=5)["events"]
            assert camera.stop() == 0
    finally:
        classifier.terminate()
        classifier.wait(15)
        listener.close()
    assert len(got) >= 10
    assert all(r["status"] == "ok" and r["source"] == "camera" for r in got), got[:3]
    assert reports, "no status report reached the listener"
