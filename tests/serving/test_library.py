"""The serving library on its own: the manifests it reads, and that a classification result keeps
its shape now that results may carry a task's ``output`` (what it may import:
tests/test_layers.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ggvision.serving import Manifest
from ggvision.serving.tasks.classification import ClassificationTask
from tests.classifier.conftest import default_store
from tests.serving.test_recent import request, serve


def test_the_built_manifests_load_unchanged_as_classification() -> None:
    store = default_store()
    keys = sorted(p.parent.name for p in store.glob("*/manifest.json"))
    assert keys
    for key in keys:
        raw = json.loads((store / key / "manifest.json").read_text(encoding="utf-8"))
        if key.endswith("-embedding"):  # weight imprinting's variants (docs/imprinting.md)
            assert raw["task"] == "embedding" and raw["output"]["kind"] == "embedding"
            continue
        assert "task" not in raw
        assert Manifest.model_validate(raw).task == "classification"


def test_a_classification_result_has_its_old_keys_and_no_output(tmp_path: Path) -> None:
    with serve(tmp_path) as served:
        assert isinstance(served.active.task, ClassificationTask)
        served.worker.on_message("local/inference", request("c1"))
    [(topic, result)] = served.bus.published
    assert topic == "local/result"
    assert list(result) == ["id", "status", "predictions", "model", "timing_ms"]
    assert len(result["predictions"]) == 3


@pytest.mark.parametrize("name", ["classification", "embedding"])
def test_the_builtin_task_is_found_by_name(name: str) -> None:
    from ggvision.serving import get_task, task_names

    assert name in task_names() and get_task(name).name == name
