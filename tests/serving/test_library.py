"""The serving library on its own: the manifests it reads, and that a classification result keeps
its shape now that results may carry a task's ``output`` (what it may import:
tests/test_layers.py)."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ggvision.serving import ImageLoader, Manifest, Worker
from ggvision.serving.tasks.classification import ClassificationTask
from tests.classifier.conftest import default_store
from tests.classifier.test_worker_swap import fake_active
from tests.reliability.test_fuzz_contract import RecordingBus


def test_the_built_manifests_load_unchanged_as_classification() -> None:
    store = default_store()
    keys = sorted(p.parent.name for p in store.glob("*/manifest.json"))
    assert keys
    for key in keys:
        raw = json.loads((store / key / "manifest.json").read_text(encoding="utf-8"))
        assert "task" not in raw
        assert Manifest.model_validate(raw).task == "classification"


def test_a_classification_result_has_its_old_keys_and_no_output(tmp_path: Path) -> None:
    active = fake_active(tmp_path, "fake", delay_ms=0)
    assert isinstance(active.task, ClassificationTask)
    bus = RecordingBus()
    worker = Worker(
        bus,  # type: ignore[arg-type]
        result_topic="local/result",
        loader=ImageLoader([], max_bytes=1 << 20, max_pixels=1 << 20),
        queue_size=4,
        top_k=3,
        threshold=0.0,
        reply_topic_allowed=lambda topic: False,
        active=active,
    )
    buf = io.BytesIO()
    Image.fromarray(np.full((16, 16, 3), 90, np.uint8)).save(buf, "PNG")
    worker.start()
    try:
        worker.on_message(
            "local/inference",
            {"id": "c1", "image": {"data": base64.b64encode(buf.getvalue()).decode()}},
        )
    finally:
        worker.stop()
    [(topic, result)] = bus.published
    assert topic == "local/result"
    assert list(result) == ["id", "status", "predictions", "model", "timing_ms"]
    assert len(result["predictions"]) == 3


@pytest.mark.parametrize("name", ["classification"])
def test_the_builtin_task_is_found_by_name(name: str) -> None:
    from ggvision.serving import get_task, task_names

    assert name in task_names() and get_task(name).name == name
