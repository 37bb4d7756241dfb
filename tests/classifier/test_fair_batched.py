"""Fair and batched (issue 19), end to end: the real classifier process on the IPC core, real
``awsiotsdk`` clients, real model files and photos.

* a flooding camera and a slow camera share the classifier: the slow one is never starved (all
  its frames answered ok, none dropped) while the flooding one drops its own oldest frames, and
  the status report's per-source figures count both;
* requests waiting together run as one batch, and each gets the answer it gets alone (the same
  classes and scores), a bad image in the batch its own error;
* a model whose input is fixed to batch 1 (the store's ONNX) runs unbatched, without error.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ggvision.frames import FrameWriter
from ggvision.testing.harness import pubsub_policy

from .conftest import REPO, sample_photo
from .test_service import NAME, Running, serve

REPLY = "local/result/cams"
STATUS = f"local/status/{NAME}"
PHOTOS = ("chelsea", "coffee", "astronaut", "rocket", "stereo_motorcycle", "camera", "clock")


def acl() -> dict[str, Any]:
    return pubsub_policy(
        publish=["local/result", "local/result/*", STATUS], subscribe=["local/inference"]
    )


def client(running: Running, name: str, module: str, *args: str) -> dict[str, Any]:
    env = running.core.component_env(
        name, pubsub_policy(publish=["local/inference"], subscribe=[REPLY, STATUS])
    )
    out = subprocess.run(
        [sys.executable, "-m", module, *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        timeout=240,
        check=True,
    )
    result: dict[str, Any] = json.loads(out.stdout.decode().strip().splitlines()[-1])
    return result


@pytest.fixture
def frames_of(tmp_path: Path) -> Iterator[Any]:
    writers: list[FrameWriter] = []

    def write(running: Running, ring: str, pixels: np.ndarray) -> dict[str, Any]:
        writer = FrameWriter(ring, slots=2, slot_bytes=pixels.nbytes, directory=running.frames)
        writers.append(writer)
        ref: dict[str, Any] = writer.write(np.ascontiguousarray(pixels)).model_dump()
        return ref

    yield write
    for writer in writers:
        writer.unlink()
        writer.close()


@pytest.mark.timeout(300)
def test_a_flooding_camera_never_starves_a_slow_one(store: Path, frames_of: Any) -> None:
    config = {
        "modelKey": "tflite-int8",
        "queueSize": 4,
        "accessControl": acl(),
        "statusIntervalSeconds": 0.2,
    }
    for running in serve(store, config):
        spec = {
            "reply_topic": REPLY,
            "timeout_s": 120,
            "status_topic": STATUS,
            # Both frames never overwritten: every reference stays valid while it waits.
            "fast": {
                "source": "cam-fast",
                "count": 300,
                "frame": frames_of(running, "ggv-fair-fast", sample_photo("coffee")),
            },
            "slow": {
                "source": "cam-slow",
                "count": 12,
                "frame": frames_of(running, "ggv-fair-slow", sample_photo("chelsea")),
            },
        }
        out = client(
            running, "com.test.Cameras", "tests.classifier.cameras_client", json.dumps(spec)
        )
        fast, slow = out["fast"], out["slow"]
        for cam in (fast, slow):
            assert cam["duplicates"] == [] and cam["missing"] == [], cam
        # The slow camera: every frame answered ok, none dropped, whatever the flood did.
        assert slow["codes"] == {"ok": 12}, slow
        # The flooding camera: its own oldest frames dropped for its newer ones.
        assert set(fast["codes"]) <= {"ok", "OVERLOADED"}, fast
        assert fast["codes"].get("OVERLOADED", 0) > 0, fast
        assert fast["codes"].get("ok", 0) > 0, fast
        assert all("newer frame" in m for m in fast["messages"]), fast["messages"]
        # Per-source figures in the status report.
        status = out["status"]
        assert status is not None, "no status report counted the slow camera's answers"
        figures = status["sources"]
        assert figures["cam-slow"]["ok"] == 12 and figures["cam-slow"]["dropped"] == 0
        assert figures["cam-fast"]["dropped"] > 0
        assert figures["cam-fast"]["dropped_frames"] == figures["cam-fast"]["dropped"]
        assert figures["cam-slow"]["latency_ms"]["p95"] >= figures["cam-slow"]["latency_ms"]["p50"]
        assert figures["cam-slow"]["latency_ms"]["p50"] > 0


def burst(running: Running, paths: list[str], prefix: str) -> dict[str, dict[str, Any]]:
    """Publish a request for each path at once; every answer by id."""
    spec = {"reply_topic": REPLY, "timeout_s": 120, "prefix": prefix, "paths": paths}
    out = client(running, f"com.test.{prefix}", "tests.classifier.batch_client", json.dumps(spec))
    assert out["duplicates"] == [] and out["missing"] == [], out
    answers: dict[str, dict[str, Any]] = out["answers"]
    return answers


def photo_paths(running: Running) -> list[str]:
    names = {p.stem: p for p in running.images.iterdir()}
    bad = running.images / "corrupt.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not a jpeg at all" * 10)
    # The corrupt image in the middle of the batch.
    return [str(names[n]) for n in PHOTOS[:3]] + [str(bad)] + [str(names[n]) for n in PHOTOS[3:]]


def last_status(running: Running) -> dict[str, Any]:
    out = client(
        running,
        "com.test.Status",
        "tests.classifier.batch_client",
        json.dumps({"reply_topic": REPLY, "timeout_s": 60, "status_topic": STATUS, "paths": []}),
    )
    status: dict[str, Any] = out["status"]
    return status


def scores(answer: dict[str, Any]) -> list[tuple[int, float]]:
    return [(p["index"], p["score"]) for p in answer["predictions"]]


@pytest.mark.timeout(300)
def test_a_batch_answers_each_request_as_it_is_answered_alone(
    store: Path, photo_files: dict[str, Path]
) -> None:
    runs: dict[int, dict[str, dict[str, Any]]] = {}
    statuses: dict[int, dict[str, Any]] = {}
    for max_batch in (8, 1):
        config = {
            "modelKey": "tflite-int8",
            "maxBatch": max_batch,
            # A batch waits (up to 5 s) for all 8 requests: they are published at once.
            "maxBatchDelayMs": 5000,
            "accessControl": acl(),
            "statusIntervalSeconds": 0.2,
        }
        for running in serve(store, config, photos=photo_files.values()):
            runs[max_batch] = burst(running, photo_paths(running), "b")
            statuses[max_batch] = last_status(running)
    batched, alone = runs[8], runs[1]
    assert set(batched) == set(alone) and len(batched) == 8
    for rid, answer in batched.items():
        assert answer["id"] == rid
        if rid.endswith("-3"):  # the corrupt image: its own error, in both runs
            assert answer["error"]["code"] == alone[rid]["error"]["code"] == "IMAGE_DECODE_FAILED"
            continue
        assert answer["status"] == "ok", answer
        got, want = scores(answer), scores(alone[rid])
        assert [i for i, _ in got] == [i for i, _ in want], rid
        assert np.allclose([s for _, s in got], [s for _, s in want], atol=1e-5), rid
    assert statuses[8]["batching"]["limit"] == 8
    assert statuses[8]["batching"]["batches"] >= 1
    assert statuses[8]["batching"]["batched_requests"] >= 2
    assert statuses[1]["batching"] == {"limit": 1, "batches": 0, "batched_requests": 0}


@pytest.mark.timeout(300)
def test_a_model_fixed_to_batch_one_runs_unbatched(
    store: Path, photo_files: dict[str, Path]
) -> None:
    config = {
        "modelKey": "onnx-int8",
        "maxBatch": 8,
        "maxBatchDelayMs": 5000,
        "accessControl": acl(),
        "statusIntervalSeconds": 0.2,
    }
    for running in serve(store, config, photos=photo_files.values()):
        answers = burst(running, photo_paths(running), "onnx")
        codes = sorted(
            a["status"] if a["status"] == "ok" else a["error"]["code"] for a in answers.values()
        )
        assert codes == ["IMAGE_DECODE_FAILED"] + ["ok"] * 7
        status = last_status(running)
        assert status["batching"] == {"limit": 1, "batches": 0, "batched_requests": 0}
