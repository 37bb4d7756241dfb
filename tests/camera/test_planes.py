"""The camera learns the frame planes from its consumers' status reports (never from a setting
of its own), sends full frames only until it knows one, and with tasks [classify, detect]
makes one plane per distinct spec; end to end, the real classifier serves the camera's frames
from the plane it asked for."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from ggvision_camera.planes import PlaneBook
from ggvision_camera.transport import RingTransport

from ggvision.contract import PlaneSpec
from ggvision.testing.agent import AgentProcess
from ggvision.testing.harness import CoreThread
from tests.camera.conftest import FRAMES_PER_PHOTO, VIDEO_PHOTOS, CameraProcess, collect

CLASSIFY = PlaneSpec(width=224, height=224, fit="crop", crop_fraction=0.875)
DETECT = PlaneSpec(width=300, height=300, fit="stretch", interpolation="bilinear")
CLASSIFIER_STATUS = "local/status/com.custom.ImageClassifier"
DETECTOR_STATUS = "local/status/com.custom.ObjectDetector"
CATS = {"tabby", "tiger cat", "Egyptian cat"}


def status(component: str, topic: str | None, spec: PlaneSpec | None) -> bytes:
    plane = None if topic is None or spec is None else {"topic": topic, "spec": spec.model_dump()}
    return json.dumps({"type": "status", "component": component, "frame_plane": plane}).encode()


def test_nothing_is_known_until_a_consumer_says() -> None:
    book = PlaneBook(["local/inference"])
    assert book.specs() == ()
    # A report from before frame planes (no frame_plane key), junk, another topic's consumer.
    book.on_status(CLASSIFIER_STATUS, json.dumps({"component": "x", "state": "RUNNING"}).encode())
    book.on_status(CLASSIFIER_STATUS, b"not json")
    book.on_status(CLASSIFIER_STATUS, b"[1, 2]")
    book.on_status(DETECTOR_STATUS, status("d", "local/detect", DETECT))
    assert book.specs() == ()
    book.on_status(CLASSIFIER_STATUS, status("c", "local/inference", CLASSIFY))
    assert book.specs() == (CLASSIFY,)


def test_a_consumer_that_takes_none_any_more_is_forgotten() -> None:
    book = PlaneBook(["local/inference"])
    book.on_status(CLASSIFIER_STATUS, status("c", "local/inference", CLASSIFY))
    book.on_status(CLASSIFIER_STATUS, status("c", None, None))  # no model, or its own preprocessing
    assert book.specs() == ()


def test_an_invalid_spec_is_ignored() -> None:
    book = PlaneBook(["local/inference"])
    bad = {"component": "c", "frame_plane": {"topic": "local/inference", "spec": {"width": 0}}}
    book.on_status(CLASSIFIER_STATUS, json.dumps(bad).encode())
    assert book.specs() == ()


def test_classify_and_detect_get_one_plane_per_distinct_spec() -> None:
    book = PlaneBook(["local/inference", "local/detect"])
    book.on_status(CLASSIFIER_STATUS, status("c", "local/inference", CLASSIFY))
    book.on_status(DETECTOR_STATUS, status("d", "local/detect", DETECT))
    assert book.specs() == (CLASSIFY, DETECT)
    # A second classifier on the same topic with the same model: still one plane of that spec.
    book.on_status("local/status/other", status("c2", "local/inference", CLASSIFY))
    assert book.specs() == (CLASSIFY, DETECT)


def test_the_ring_transport_writes_a_plane_per_spec_beside_the_full_frame(tmp_path: Path) -> None:
    book = PlaneBook(["local/inference", "local/detect"])
    transport = RingTransport(
        "ggv-cam-planes", slots=3, slot_bytes=64 * 48 * 3, directory=tmp_path, planes=book.specs
    )
    frame = np.random.default_rng(1).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    try:
        assert transport.image(frame).frame.planes is None  # full frames only, until known
        book.on_status(CLASSIFIER_STATUS, status("c", "local/inference", CLASSIFY))
        book.on_status(DETECTOR_STATUS, status("d", "local/detect", DETECT))
        ref = transport.image(frame).frame
        assert ref.planes is not None
        assert [p.spec for p in ref.planes] == [CLASSIFY, DETECT]
        assert len({p.ring for p in ref.planes} | {ref.ring}) == 3
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
            [ref.ring, *(p.ring for p in ref.planes)]
        )
    finally:
        transport.close()
    assert not list(tmp_path.iterdir())


# --- end to end: the real camera and the real classifier ---------------------------------------
def test_end_to_end_the_classifier_serves_the_cameras_frames_from_its_plane(
    core: CoreThread, listener: AgentProcess, frames: Path, media: Path, store: Path
) -> None:
    from tests.classifier.test_service import start_classifier

    results = listener("subscribe", topic="local/result")["sub"]
    reports = listener("subscribe", topic=CLASSIFIER_STATUS)["sub"]
    camera_reports = listener("subscribe", topic="local/status/com.custom.CameraSource")["sub"]
    classifier = start_classifier(
        core,
        store,
        {
            "modelKey": "tflite-int8",
            "frameDirectory": str(frames),
            "queueSize": 4,
            "statusIntervalSeconds": 0.3,
        },
    )
    try:
        assert core.state_of("com.custom.ImageClassifier") == "RUNNING"
        overrides = {
            "source": {"type": "video", "path": str(media / "photos.mp4")},
            "fps": 0,
            "maxInFlight": 2,
            "ringDirectory": str(frames),
            "statusIntervalSeconds": 0.5,
        }
        with CameraProcess(core, overrides) as camera:
            camera.wait_running()
            got = collect(listener, results, time.monotonic() + 4.0)
            assert camera.stop() == 0
            logs = camera.logs()
        statuses = collect(listener, reports, time.monotonic() + 0.8)
    finally:
        classifier.terminate()
        classifier.wait(15)
    cam_statuses = collect(listener, camera_reports, time.monotonic() + 0.1)

    learned = [r for r in logs if r["event"] == "camera.plane_learned"]
    assert learned and learned[0]["spec"]["width"] == 224 and learned[0]["spec"]["fit"] == "crop"
    plane = statuses[-1]["frame_plane"]
    assert plane["topic"] == "local/inference" and plane["spec"] == learned[0]["spec"]
    frames_served: dict[str, Any] = plane["frames"]
    assert frames_served["used"] > 0, frames_served  # served from the plane ...
    assert frames_served["mismatch"] == frames_served["unreadable"] == 0
    assert any(s.get("planes") == [learned[0]["spec"]] for s in cam_statuses), cam_statuses
    assert len(got) > frames_served["used"] // 2
    assert all(r["status"] == "ok" for r in got), got[:3]
    # ... and answers as the full frames did: each photo of the video is still what it is.
    by_photo: dict[str, set[str]] = {}
    for r in got:
        index = int(r["id"].rsplit("-", 1)[1])
        cycle = len(VIDEO_PHOTOS) * FRAMES_PER_PHOTO
        name = VIDEO_PHOTOS[((index - 1) % cycle) // FRAMES_PER_PHOTO]
        by_photo.setdefault(name, set()).add(r["predictions"][0]["label"])
    assert by_photo["chelsea"] and by_photo["chelsea"] <= CATS, by_photo
    assert not by_photo.get("coffee", set()) & CATS
