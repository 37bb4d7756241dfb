"""The worker's swap mechanics with the pipeline's fake backend (a slow, deterministic model):
a request in flight finishes on the model it was prepared for, the next one uses the new model,
and the old model is closed only after its last request. The bus is the real IPC client."""

from __future__ import annotations

import base64
import io
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ggvision.bus import IpcBus
from ggvision.contract import InferenceResult
from ggvision.serving import ActiveModel, Worker
from ggvision.serving.images import ImageLoader
from ggvision.serving.models import backends
from ggvision.serving.models.store import Manifest, Model
from ggvision.testing.harness import CoreThread, pubsub_policy


def fake_active(tmp_path: Path, name: str, delay_ms: int) -> ActiveModel:
    manifest = Manifest.model_validate(
        {
            "name": name,
            "version": "0",
            "variant": name,
            "format": "tflite",
            "precision": "fp32",
            "file": "absent.tflite",
            "num_classes": 10,
            "input": {"shape": [1, 8, 8, 3], "layout": "NHWC", "dtype": "float32"},
            "preprocess": {"resize": 8},
        }
    )
    model = Model(tmp_path, manifest, [f"class{i}" for i in range(10)])
    backend = backends.create("fake", model, options={"delay_ms": delay_ms})
    backend.load()
    return ActiveModel.of(model, backend)


def png() -> str:
    buf = io.BytesIO()
    Image.fromarray(np.full((16, 16, 3), 120, np.uint8)).save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


def fake_worker(bus: IpcBus, active: ActiveModel) -> Worker:
    """A worker serving ``active`` that publishes to local/result and answers no reply topic."""
    return Worker(
        bus,
        result_topic="local/result",
        loader=ImageLoader([], max_bytes=1 << 20, max_pixels=1 << 20),
        queue_size=8,
        top_k=1,
        threshold=0.0,
        reply_topic_allowed=lambda t: False,
        active=active,
    )


@pytest.fixture
def bus(core: CoreThread, monkeypatch: pytest.MonkeyPatch) -> Iterator[IpcBus]:
    env = core.component_env("com.test.Worker", pubsub_policy(publish=["local/result"]))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    b = IpcBus()
    yield b
    b.close()


def test_swap_between_requests_and_close_after_the_last_one(bus: IpcBus, tmp_path: Path) -> None:
    old = fake_active(tmp_path, "old", delay_ms=300)
    new = fake_active(tmp_path, "new", delay_ms=0)
    closed: list[str] = []
    old.backend.close = lambda: closed.append("old")  # type: ignore[method-assign]
    worker = fake_worker(bus, old)
    results: list[InferenceResult] = []
    done = threading.Event()

    def on_result(r: InferenceResult) -> None:
        results.append(r)
        if len(results) == 3:
            done.set()

    worker.on_result = on_result
    worker.start()
    try:
        image = png()
        worker.on_message("local/inference", {"id": "r1", "image": {"data": image}})
        time.sleep(0.1)  # r1 is now in the old model's 300 ms inference
        assert worker.swap_model(new) is old
        retired: list[bool] = []
        retirer = threading.Thread(target=lambda: retired.append(worker.retire(old)))
        retirer.start()
        worker.on_message("local/inference", {"id": "r2", "image": {"data": image}})
        worker.on_message("local/inference", {"id": "r3", "image": {"data": image}})
        time.sleep(0.05)
        closed_while_r1_in_flight = list(closed)
        assert done.wait(10)
        retirer.join(10)
    finally:
        worker.stop()
    assert closed_while_r1_in_flight == []
    assert retired == [True] and closed == ["old"]
    by_id = {r.id: r for r in results}
    assert all(r.status == "ok" for r in results)
    assert by_id["r1"].model is not None and by_id["r1"].model.name == "old"
    assert [by_id[i].model.name for i in ("r2", "r3") if by_id[i].model] == ["new", "new"]
