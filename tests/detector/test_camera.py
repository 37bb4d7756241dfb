"""CameraSource -> classifier and detector at once (``tasks: [classify, detect]``): real
processes on the IPC core, frames by reference through the shared-memory ring, real models.
Every frame is answered twice, once by each component, and the boxes are where the person is."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from PIL import Image

from ggvision.testing.agent import AgentProcess
from ggvision.testing.harness import CoreThread, pubsub_policy
from tests.classifier.conftest import REPO, require, require_runtime, sample_photo
from tests.classifier.test_service import start_classifier
from tests.detector.conftest import GROUND_TRUTH, iou

CAMERA = "com.custom.CameraSource"
DETECTOR = "com.custom.ObjectDetector"


def defaults(component: str) -> dict[str, Any]:
    recipe = yaml.safe_load((REPO / "components" / component / "recipe.yaml").read_text())
    cfg: dict[str, Any] = recipe["ComponentConfiguration"]["DefaultConfiguration"]
    return cfg


def _running(core: CoreThread, name: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while core.state_of(name) != "RUNNING":
        assert proc.poll() is None, f"{name} exited"
        assert time.monotonic() < deadline, f"{name} is not running"
        time.sleep(0.05)


@pytest.fixture()
def tmp() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="ggv-camdet-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_each_frame_goes_to_the_classifier_and_the_detector(dstore: Path, tmp: Path) -> None:
    require_runtime("ai_edge_litert")
    classifier_store = REPO / "build" / "model-store"
    if not (classifier_store / "tflite-int8" / "manifest.json").is_file():
        require("no classifier model store (make models)")
    if not (dstore / "ssdlite-person-tflite-int8" / "manifest.json").is_file():
        require("no ssdlite-person-tflite-int8 in the detection store")
    photos, frames = tmp / "photos", tmp / "frames"
    photos.mkdir()
    frames.mkdir()
    Image.fromarray(sample_photo("astronaut")).save(photos / "astronaut.jpg", quality=92)
    procs: list[subprocess.Popen[bytes]] = []
    with CoreThread() as core:
        listener = AgentProcess(
            core.component_env("com.test.Listener", pubsub_policy(subscribe=["local/result"]))
        )
        results = listener("subscribe", topic="local/result")["sub"]
        try:
            procs.append(
                start_classifier(
                    core,
                    classifier_store,
                    {"modelKey": "tflite-int8", "frameDirectory": str(frames), "threads": 1},
                )
            )
            det_cfg = {
                **defaults(DETECTOR),
                "modelKey": "ssdlite-person-tflite-int8",
                "frameDirectory": str(frames),
                "threads": 1,
            }
            env = core.component_env(DETECTOR, configuration=det_cfg)
            env["GGV_MODEL_STORE"] = str(dstore)
            procs.append(subprocess.Popen([sys.executable, "-m", "ggvision_detector"], env=env))
            _running(core, DETECTOR, procs[-1])
            cam_cfg = {
                **defaults(CAMERA),
                "source": {"type": "folder", "path": str(photos)},
                "fps": 10,
                "tasks": ["classify", "detect"],
                "maxInFlight": 2,
                "ringDirectory": str(frames),
            }
            camera = subprocess.Popen(
                [sys.executable, "-m", "ggvision_camera"],
                env=core.component_env(CAMERA, configuration=cam_cfg),
            )
            procs.append(camera)
            _running(core, CAMERA, camera)
            got: list[dict[str, Any]] = []
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and sum("task" in r for r in got) < 6:
                for e in listener("events", sub=results, n=50, timeout=1)["events"]:
                    got.append(
                        e["json"] if "json" in e else json.loads(base64.b64decode(e["binary"]))
                    )
        finally:
            listener.close()
            for p in reversed(procs):
                p.terminate()
                p.wait(15)
    assert all(r["status"] == "ok" and r["source"] == "camera" for r in got), got[:4]
    detected = [r for r in got if r.get("task") == "detect"]
    classified = [r for r in got if "task" not in r]
    assert len(detected) >= 6 and classified
    for r in detected:
        assert [d["label"] for d in r["detections"]] == ["person"]
        assert iou(r["detections"][0], GROUND_TRUTH["astronaut"]["objects"][0]["box"]) >= 0.5
    assert all(r["predictions"] for r in classified)
    # The same frame (one ring slot) answered by both: the detector's id is the classifier's
    # with a suffix.
    ids = {r["id"] for r in classified}
    assert any(r["id"].rsplit("-", 1)[0] in ids for r in detected)
