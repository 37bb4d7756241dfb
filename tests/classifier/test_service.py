"""The classifier component end to end: a real ``python -m ggvision_classifier`` process on the
IPC core, a real requester client, real model files and real photos."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from ggvision.frames import FrameWriter
from ggvision.testing.agent import AgentProcess
from ggvision.testing.harness import CoreThread, pubsub_policy
from tests.classifier.conftest import REPO, sample_photo

RECIPE = REPO / "components" / "com.custom.ImageClassifier" / "recipe.yaml"
NAME = "com.custom.ImageClassifier"


def recipe_defaults() -> dict[str, Any]:
    recipe = yaml.safe_load(RECIPE.read_text())
    cfg: dict[str, Any] = recipe["ComponentConfiguration"]["DefaultConfiguration"]
    return cfg


class Running:
    def __init__(
        self,
        core: CoreThread,
        proc: subprocess.Popen[bytes],
        requester: AgentProcess,
        images: Path,
        frames: Path,
    ) -> None:
        self.core, self.proc, self.requester = core, proc, requester
        self.images, self.frames = images, frames
        self.results = requester("subscribe", topic="local/result")["sub"]
        self._pending: list[dict[str, Any]] = []

    def ask(self, request: dict[str, Any] | bytes, timeout: float = 20) -> dict[str, Any]:
        """Publish one request and return the one result that answers it."""
        if isinstance(request, bytes):
            self.requester(
                "publish", topic="local/inference", binary=base64.b64encode(request).decode()
            )
            rid = None
        else:
            self.requester("publish", topic="local/inference", json=request)
            rid = request.get("id")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for r in self._pending:
                if rid is None or r["id"] == rid:
                    self._pending.remove(r)
                    return r
            events = self.requester("events", sub=self.results, n=1, timeout=1)["events"]
            self._pending += [_result(e) for e in events]
        raise AssertionError(f"no result for {request!r}")


def _result(event: dict[str, Any]) -> dict[str, Any]:
    if "json" in event:
        result: dict[str, Any] = event["json"]
        return result
    decoded: dict[str, Any] = json.loads(base64.b64decode(event["binary"]))
    return decoded


def start_classifier(
    core: CoreThread, store: Path, overrides: dict[str, Any]
) -> subprocess.Popen[bytes]:
    cfg = {**recipe_defaults(), **overrides}
    env = core.component_env(NAME, configuration=cfg)
    env["GGV_MODEL_STORE"] = str(store)
    proc = subprocess.Popen([sys.executable, "-m", "ggvision_classifier"], env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if core.state_of(NAME) in ("RUNNING", "ERRORED"):
            return proc
        assert proc.poll() is None, "classifier exited during start-up"
        time.sleep(0.05)
    proc.kill()
    raise AssertionError("classifier did not report its state")


def serve(
    store: Path,
    overrides: dict[str, Any],
    *,
    photos: Iterable[Path] = (),
    requester: str = "com.test.Requester",
    state: str | None = None,
    profile: str = "nucleus",
) -> Iterator[Running]:
    """A classifier (recipe defaults + ``overrides``) on a fresh core and a requester that may
    publish requests and receive results; ``photos`` are copied into its allowed ``images``
    directory first; ``state``: the state the classifier must have reported; ``profile``: the
    core's (``lite``: Greengrass nucleus lite's limits)."""
    images = Path(tempfile.mkdtemp(prefix="ggv-img-", dir="/tmp"))
    frames = Path(tempfile.mkdtemp(prefix="ggv-frm-", dir="/tmp"))
    for path in photos:
        shutil.copy(path, images / path.name)
    cfg = {"allowedDirectories": [str(images)], "frameDirectory": str(frames), **overrides}
    try:
        with CoreThread(profile=profile) as core:
            proc = start_classifier(core, store, cfg)
            agent = AgentProcess(
                core.component_env(
                    requester,
                    pubsub_policy(publish=["local/inference"], subscribe=["local/result"]),
                )
            )
            try:
                if state is not None:
                    assert core.state_of(NAME) == state
                yield Running(core, proc, agent, images, frames)
            finally:
                agent.close()
                proc.terminate()
                proc.wait(15)
    finally:
        shutil.rmtree(images, ignore_errors=True)
        shutil.rmtree(frames, ignore_errors=True)


@pytest.fixture(scope="module")
def running(store: Path, photo_files: dict[str, Path]) -> Iterator[Running]:
    yield from serve(
        store, {"modelKey": "tflite-int8", "queueSize": 4}, photos=photo_files.values()
    )


def test_reports_running_once_the_model_is_warm(running: Running) -> None:
    assert running.core.state_of(NAME) == "RUNNING"


def test_classifies_photos_by_path_like_the_float_reference(
    running: Running, reference: dict[str, list[tuple[int, float]]]
) -> None:
    for name in ("chelsea", "coffee", "stereo_motorcycle"):
        filename = next(p.name for p in running.images.iterdir() if p.stem == name)
        result = running.ask(
            {
                "id": f"path-{name}",
                "image": {"path": str(running.images / filename)},
                "source": "test",
            }
        )
        assert result["status"] == "ok", result
        assert result["id"] == f"path-{name}"
        assert result["source"] == "test"
        assert result["predictions"][0]["index"] == reference[name][0][0]
        assert len(result["predictions"]) == 5
        assert result["model"] == {
            "name": "efficientnet-lite0",
            "version": "1.0.0",
            "backend": "tflite",
            "precision": "int8",
        }
        assert set(result["timing_ms"]) == {"queue", "decode", "preprocess", "inference", "total"}
        assert result["timing_ms"]["total"] >= result["timing_ms"]["inference"] > 0


def test_the_seed_request_form_and_a_generated_id(running: Running) -> None:
    result = running.ask({"image_dir": str(running.images), "fname": "coffee.jpg"})
    assert result["status"] == "ok"
    assert len(result["id"]) == 32
    assert result["predictions"][0]["label"] == "espresso"


def test_inline_image_top_k_and_threshold(running: Running) -> None:
    img = (running.images / "chelsea.jpg").read_bytes()
    from io import BytesIO

    from PIL import Image

    small = BytesIO()
    Image.open(BytesIO(img)).resize((300, 200)).save(small, "JPEG", quality=80)
    result = running.ask(
        {
            "id": "inline",
            "image": {"data": base64.b64encode(small.getvalue()).decode()},
            "top_k": 2,
            "threshold": 0.05,
        }
    )
    assert result["status"] == "ok"
    assert 1 <= len(result["predictions"]) <= 2
    assert all(p["score"] >= 0.05 for p in result["predictions"])
    assert result["predictions"][0]["label"] in {"tabby", "tiger cat", "Egyptian cat"}


def test_a_camera_frame_by_reference(
    running: Running, reference: dict[str, list[tuple[int, float]]]
) -> None:
    pixels = np.ascontiguousarray(sample_photo("chelsea"))
    writer = FrameWriter(
        "ggv-test-cam", slots=2, slot_bytes=pixels.nbytes, directory=running.frames
    )
    try:
        ref = writer.write(pixels)
        result = running.ask({"id": "frame-1", "image": {"frame": ref.model_dump()}})
        assert result["status"] == "ok", result
        assert result["predictions"][0]["index"] == reference["chelsea"][0][0]
        writer.write(pixels)
        writer.write(pixels)  # overwrites the first frame's slot
        stale = running.ask({"id": "frame-stale", "image": {"frame": ref.model_dump()}})
        assert stale["error"]["code"] == "IMAGE_NOT_FOUND"
        assert "stale" in stale["error"]["message"]
    finally:
        writer.unlink()


@pytest.mark.parametrize(
    ("request_", "code"),
    [
        ({"id": "e1", "image": {"path": "/etc/passwd"}}, "PATH_NOT_ALLOWED"),
        ({"id": "e2", "image": {"path": "relative.jpg"}}, "PATH_NOT_ALLOWED"),
        ({"id": "e3", "image": {"data": "not base64!"}}, "INVALID_REQUEST"),
        ({"id": "e4", "image": {"path": "/x"}, "top_k": "five"}, "INVALID_REQUEST"),
        (
            {"id": "e5", "image": {"path": "/x"}, "reply_topic": "local/elsewhere"},
            "INVALID_REQUEST",
        ),
        ({"id": "e6"}, "INVALID_REQUEST"),
    ],
)
def test_bad_requests_get_one_structured_error_each(
    running: Running, request_: dict[str, Any], code: str
) -> None:
    result = running.ask(request_)
    assert (result["id"], result["status"], result["error"]["code"]) == (
        request_["id"],
        "error",
        code,
    )
    assert result["error"]["message"]


def test_missing_files_directories_and_corrupt_images(running: Running) -> None:
    (running.images / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    (running.images / "empty.png").write_bytes(b"")
    (running.images / "adir").mkdir(exist_ok=True)
    cases = {
        "missing.jpg": "IMAGE_NOT_FOUND",
        "adir": "IMAGE_NOT_FOUND",
        "broken.jpg": "IMAGE_DECODE_FAILED",
        "empty.png": "IMAGE_DECODE_FAILED",
    }
    for fname, code in cases.items():
        result = running.ask({"id": fname, "image": {"path": str(running.images / fname)}})
        assert result["error"]["code"] == code, result


def test_garbage_payload_gets_an_error_with_a_generated_id_and_service_continues(
    running: Running,
) -> None:
    result = running.ask(b"\x00\x01 not json")
    assert result["status"] == "error"
    assert result["error"]["code"] == "INVALID_REQUEST"
    assert len(result["id"]) == 32
    ok = running.ask({"id": "after", "image": {"path": str(running.images / "coffee.jpg")}})
    assert ok["status"] == "ok"
    assert running.proc.poll() is None


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        pytest.param(
            b'{"id": "raw-utf8", "image": {"path": "/x/\xff\xfe.jpg"}}',
            "INVALID_REQUEST",
            id="not-utf8",
        ),
        pytest.param(
            b'{"id": "raw-deep", "image": ' + b"[" * 100_000, "INVALID_REQUEST", id="too-deep"
        ),
        pytest.param(
            b'{"id": "raw-big", "image": {"data": "' + b"A" * (300 * 1024) + b'"}}',
            "IMAGE_TOO_LARGE",
            id="oversized",
        ),
    ],
)
def test_undecodable_requests_are_answered_under_their_own_id(
    running: Running, payload: bytes, code: str
) -> None:
    result = running.ask(payload)
    assert (result["status"], result["error"]["code"]) == ("error", code)
    assert result["id"] == json.loads(payload[: payload.index(b",")] + b"}")["id"]


def test_a_burst_beyond_the_queue_is_answered_ok_or_overloaded_exactly_once(
    running: Running,
) -> None:
    path = str(running.images / "rocket.jpg")
    ids = [f"burst-{i}" for i in range(40)]
    for rid in ids:
        running.requester(
            "publish", topic="local/inference", json={"id": rid, "image": {"path": path}}
        )
    got: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + 60
    while len(got) < len(ids) and time.monotonic() < deadline:
        events = running.requester("events", sub=running.results, n=len(ids) - len(got), timeout=2)[
            "events"
        ]
        for e in events:
            r = _result(e)
            assert r["id"] not in got, f"two answers for {r['id']}"
            got[r["id"]] = r
    assert set(got) == set(ids)
    statuses = {r["status"] if r["status"] == "ok" else r["error"]["code"] for r in got.values()}
    assert statuses <= {"ok", "OVERLOADED"}
    assert "ok" in statuses
