"""The detector component end to end: a real ``python -m ggvision_detector`` process on the IPC
core, a real awsiotsdk requester, real detection models and real photos. Requests on
local/detect by path, frame and inline image answered on local/result with ``"task": "detect"``;
bad requests answered with structured errors; hot-swap between two variants under load with no
request lost; a model that is not a detector refused."""

from __future__ import annotations

import base64
import io
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from PIL import Image

from ggvision.core.deployments import DeployResult
from ggvision.frames import FrameWriter
from ggvision.testing.agent import AgentProcess
from ggvision.testing.harness import CoreThread, pubsub_policy
from tests.classifier.conftest import REPO, require_runtime, sample_photo
from tests.detector.conftest import GROUND_TRUTH, iou

NAME = "com.custom.ObjectDetector"
RECIPE = REPO / "components" / NAME / "recipe.yaml"
STATUS = f"local/status/{NAME}"
VARIANTS = ("ssdlite-person-tflite-int8", "ssdlite-person-onnx-fp32")


def recipe_defaults() -> dict[str, Any]:
    cfg: dict[str, Any] = yaml.safe_load(RECIPE.read_text())["ComponentConfiguration"][
        "DefaultConfiguration"
    ]
    return cfg


def _result(event: dict[str, Any]) -> dict[str, Any]:
    if "json" in event:
        result: dict[str, Any] = event["json"]
        return result
    decoded: dict[str, Any] = json.loads(base64.b64decode(event["binary"]))
    return decoded


class Running:
    def __init__(self, core: CoreThread, proc: subprocess.Popen[bytes], tmp: Path) -> None:
        self.core, self.proc = core, proc
        self.images, self.frames = tmp / "images", tmp / "frames"
        self.requester = AgentProcess(
            core.component_env(
                "com.test.Requester",
                pubsub_policy(publish=["local/detect"], subscribe=["local/result", STATUS]),
            )
        )
        self.results = self.requester("subscribe", topic="local/result")["sub"]
        self.statuses = self.requester("subscribe", topic=STATUS)["sub"]
        self.seen: dict[str, dict[str, Any]] = {}
        self.duplicates: list[str] = []

    def send(self, request: dict[str, Any] | bytes) -> None:
        if isinstance(request, bytes):
            binary = base64.b64encode(request).decode()
            self.requester("publish", topic="local/detect", binary=binary)
        else:
            self.requester("publish", topic="local/detect", json=request)

    def collect(self, ids: list[str], timeout: float = 120) -> dict[str, dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while not set(ids) <= set(self.seen) and time.monotonic() < deadline:
            for e in self.requester("events", sub=self.results, n=50, timeout=1)["events"]:
                r = _result(e)
                if r["id"] in self.seen:
                    self.duplicates.append(r["id"])
                self.seen[r["id"]] = r
        return {i: self.seen[i] for i in ids if i in self.seen}

    def ask(self, request: dict[str, Any] | bytes, rid: str | None = None) -> dict[str, Any]:
        rid = rid or str(request["id"])  # type: ignore[index]
        self.send(request)
        got = self.collect([rid], timeout=30)
        assert rid in got, f"no answer to {rid}"
        return got[rid]

    def path(self, name: str) -> dict[str, str]:
        return {"path": str(next(p for p in self.images.iterdir() if p.stem == name))}

    def deploy(self, merge: dict[str, Any]) -> DeployResult:
        return self.core.deploy({NAME: {"MERGE": merge}})

    def model_key(self) -> str:
        return str(self.core.get_config(NAME)["modelKey"])


def _store(detect_store: Path, classifier_store: Path, into: Path) -> Path:
    for variant in VARIANTS:
        if not (detect_store / variant / "manifest.json").is_file():
            pytest.skip(f"variant {variant} is not in the detection model store")
        shutil.copytree(detect_store / variant, into / variant)
    if (classifier_store / "tflite-int8" / "manifest.json").is_file():
        shutil.copytree(classifier_store / "tflite-int8", into / "a-classifier")
    return into


@pytest.fixture(scope="module")
def running(dstore: Path, photo_files: dict[str, Path]) -> Iterator[Running]:
    require_runtime("ai_edge_litert")
    require_runtime("onnxruntime")
    tmp = Path(tempfile.mkdtemp(prefix="ggv-det-", dir="/tmp"))
    for sub in ("images", "frames", "store"):
        (tmp / sub).mkdir()
    for path in photo_files.values():
        shutil.copy(path, tmp / "images" / path.name)
    store = _store(dstore, REPO / "build" / "model-store", tmp / "store")
    cfg = {
        **recipe_defaults(),
        "modelKey": VARIANTS[0],
        "allowedDirectories": [str(tmp / "images")],
        "frameDirectory": str(tmp / "frames"),
        "queueSize": 1000,
        "threads": 1,
        "statusIntervalSeconds": 0.3,
    }
    try:
        with CoreThread(validation_timeout_s=30.0) as core:
            env = core.component_env(NAME, configuration=cfg)
            env["GGV_MODEL_STORE"] = str(store)
            proc = subprocess.Popen([sys.executable, "-m", "ggvision_detector"], env=env)
            deadline = time.monotonic() + 60
            while core.state_of(NAME) not in ("RUNNING", "ERRORED"):
                assert proc.poll() is None, "detector exited during start-up"
                assert time.monotonic() < deadline, "detector did not report its state"
                time.sleep(0.05)
            r = Running(core, proc, tmp)
            try:
                yield r
            finally:
                r.requester.close()
                proc.terminate()
                proc.wait(15)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _truth(photo: str) -> list[float]:
    box: list[float] = GROUND_TRUTH[photo]["objects"][0]["box"]
    return box


def test_running_with_the_recipe_defaults(running: Running) -> None:
    assert running.core.state_of(NAME) == "RUNNING"
    assert recipe_defaults()["requestTopic"] == "local/detect"


def test_a_path_request_is_answered_with_the_boxes(running: Running) -> None:
    r = running.ask({"id": "p-1", "image": running.path("astronaut"), "source": "cam-a"})
    assert r["status"] == "ok", r
    assert (r["id"], r["source"], r["task"]) == ("p-1", "cam-a", "detect")
    assert "predictions" not in r or r["predictions"] == []
    assert r["model"] == {
        "name": "ssdlite-mobilenetv2-person",
        "version": "1.0.0",
        "backend": "tflite",
        "precision": "int8",
    }
    (person,) = r["detections"]
    assert set(person) == {"label", "index", "score", "box"}
    assert (person["label"], person["index"]) == ("person", 0)
    assert person["score"] >= 0.5
    assert iou(person, _truth("astronaut")) >= 0.5
    assert r["timing_ms"]["inference"] > 0


def test_nothing_is_found_where_nobody_is(running: Running) -> None:
    r = running.ask({"id": "p-2", "image": running.path("coffee")})
    assert r["status"] == "ok" and r["detections"] == [] and r["task"] == "detect"


def test_a_frame_request(running: Running) -> None:
    pixels = np.ascontiguousarray(sample_photo("camera")[:, :, None].repeat(3, axis=2))
    writer = FrameWriter("ggv-det-cam", slots=2, slot_bytes=pixels.nbytes, directory=running.frames)
    try:
        ref = writer.write(pixels)
        r = running.ask({"id": "f-1", "image": {"frame": ref.model_dump()}, "source": "cam-b"})
        assert r["status"] == "ok", r
        assert r["source"] == "cam-b"
        assert [d["label"] for d in r["detections"]] == ["person"]
        assert iou(r["detections"][0], _truth("camera")) >= 0.5
    finally:
        writer.unlink()


def test_an_inline_request_with_its_own_limits(running: Running) -> None:
    buf = io.BytesIO()
    Image.fromarray(sample_photo("astronaut")).resize((256, 256)).save(buf, "JPEG", quality=85)
    data = base64.b64encode(buf.getvalue()).decode()
    r = running.ask({"id": "i-1", "image": {"data": data}})
    assert r["status"] == "ok" and [d["label"] for d in r["detections"]] == ["person"]
    # The request's own threshold and top_k override scoreThreshold and maxDetections.
    weak = running.ask({"id": "i-2", "image": {"data": data}, "threshold": 0.0, "top_k": 4})
    assert len(weak["detections"]) == 4
    scores = [d["score"] for d in weak["detections"]]
    assert scores == sorted(scores, reverse=True)


@pytest.mark.parametrize(
    ("request_", "code"),
    [
        ({"id": "e-1", "image": {"path": "/etc/passwd"}}, "PATH_NOT_ALLOWED"),
        ({"id": "e-2", "image": {"data": "not base64!"}}, "INVALID_REQUEST"),
        ({"id": "e-3", "image": {"path": "/tmp/x.jpg"}, "threshold": 2}, "INVALID_REQUEST"),
        (b'{"id": "e-4", "image": ', "INVALID_REQUEST"),
    ],
)
def test_bad_requests_get_structured_errors(
    running: Running, request_: dict[str, Any] | bytes, code: str
) -> None:
    rid = request_["id"] if isinstance(request_, dict) else "e-4"
    r = running.ask(request_, rid)
    assert r["status"] == "error" and r["error"]["code"] == code, r
    assert r["task"] == "detect"


def test_a_missing_file_and_a_broken_image(running: Running) -> None:
    missing = running.ask({"id": "m-1", "image": {"path": str(running.images / "nope.jpg")}})
    assert missing["error"]["code"] == "IMAGE_NOT_FOUND"
    (running.images / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    broken = running.ask({"id": "m-2", "image": {"path": str(running.images / "broken.jpg")}})
    assert broken["error"]["code"] == "IMAGE_DECODE_FAILED"


def test_hot_swap_under_load_loses_nothing(running: Running) -> None:
    s = running
    start = s.model_key()
    target = VARIANTS[1] if start == VARIANTS[0] else VARIANTS[0]
    deployed: list[DeployResult] = []
    deployer = threading.Thread(target=lambda: deployed.append(s.deploy({"modelKey": target})))
    ids: list[str] = []
    after = 0
    while after < 20:
        rid = f"load-{len(ids)}"
        s.send({"id": rid, "image": s.path("astronaut")})
        ids.append(rid)
        if len(ids) == 15:
            deployer.start()
        if len(ids) > 15 and not deployer.is_alive():
            after += 1
        time.sleep(0.01)
    deployer.join(60)
    got = s.collect(ids)
    assert deployed and deployed[0].status == "SUCCEEDED", deployed
    assert set(got) == set(ids), f"lost: {sorted(set(ids) - set(got))[:5]}"
    assert s.duplicates == []
    assert {i: r.get("error") for i, r in got.items() if r["status"] != "ok"} == {}
    backends = [got[i]["model"]["backend"] for i in ids]
    old, new = ("tflite", "onnx") if target == VARIANTS[1] else ("onnx", "tflite")
    switch = backends.index(new)
    assert backends[:switch] == [old] * switch and backends[switch:] == [new] * (len(ids) - switch)
    assert all([d["label"] for d in got[i]["detections"]] == ["person"] for i in ids)
    assert s.model_key() == target


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("a-classifier", "is a classification model"),
        ("not-there", "no model at"),
    ],
)
def test_a_model_that_cannot_detect_is_refused_and_the_old_keeps_serving(
    running: Running, key: str, reason: str
) -> None:
    if key == "a-classifier" and not (running.images.parent / "store" / key).is_dir():
        pytest.skip("no classifier model in build/model-store to offer the detector")
    before = running.model_key()
    result = running.deploy({"modelKey": key})
    assert result.status == "FAILED"
    assert reason in result.message and NAME in result.message, result.message
    assert running.model_key() == before
    r = running.ask({"id": f"after-{key}", "image": running.path("astronaut")})
    assert r["status"] == "ok" and [d["label"] for d in r["detections"]] == ["person"]


def test_the_label_allow_list_from_the_configuration(running: Running) -> None:
    assert running.deploy({"labels": ["cat"]}).status == "SUCCEEDED"
    r = running.ask({"id": "labels-1", "image": running.path("astronaut")})
    assert r["status"] == "ok" and r["detections"] == []
    assert running.deploy({"labels": []}).status == "SUCCEEDED"
    r = running.ask({"id": "labels-2", "image": running.path("astronaut")})
    assert [d["label"] for d in r["detections"]] == ["person"]


def test_status_reports(running: Running) -> None:
    for i in range(3):
        running.ask({"id": f"status-{i}", "image": running.path("camera")})
    deadline = time.monotonic() + 15
    report: dict[str, Any] = {}
    while time.monotonic() < deadline and report.get("ok", 0) < 3:
        for e in running.requester("events", sub=running.statuses, n=1, timeout=1)["events"]:
            report = _result(e)
    assert report["component"] == NAME and report["type"] == "status"
    assert report["ok"] >= 3 and report["latency_ms"]["p50"] > 0
    assert report["model"]["name"] == "ssdlite-mobilenetv2-person"
    assert isinstance(report["errors"], dict)
