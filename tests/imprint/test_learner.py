"""The learner's own rules without a process: a model that cannot learn, a full queue, a file
that cannot be read at start."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any
from unittest.mock import create_autospec

import numpy as np
import pytest

from ggvision.bus import Bus
from ggvision.serving import Worker
from ggvision.serving.images import ImageLoader
from ggvision.serving.imprint import ClassStore, LearnError
from ggvision.serving.learning import STORE_FILE, Learner, LearningConfig
from ggvision.serving.models.backends.base import Backend
from tests.classifier.test_worker_swap import fake_active


def learner(tmp_path: Path, **cfg: Any) -> tuple[Learner, Any]:
    bus = create_autospec(Bus, instance=True)
    worker = create_autospec(Worker, instance=True)
    worker.active = fake_active(tmp_path, "classifier", delay_ms=0)

    def no_backend(active: Any) -> Backend:
        raise AssertionError("a classification model gets no learning backend")

    made = Learner(
        bus,
        worker,
        LearningConfig(**cfg),
        work_dir=tmp_path,
        loader=ImageLoader([], max_bytes=1 << 20, max_pixels=1 << 20),
        swap_lock=threading.Lock(),
        make_backend=no_backend,
        reply_topic_allowed=lambda t: False,
        role="classifier",
    )
    return made, bus


def test_a_classification_model_cannot_learn(tmp_path: Path) -> None:
    made, _ = learner(tmp_path)
    with pytest.raises(LearnError) as info:
        made.handle({"id": "x", "op": "add", "label": "mug", "image": {"path": "/x.png"}})
    assert info.value.code == "MODEL_UNAVAILABLE" and "embedding" in info.value.message
    assert not (tmp_path / STORE_FILE).exists()


def test_a_full_queue_answers_overloaded_at_once(tmp_path: Path) -> None:
    made, bus = learner(tmp_path, queue_size=1)  # the thread is not started: nothing drains
    made.on_message("local/learn", {"id": "a", "op": "list"})
    made.on_message("local/learn", {"id": "b", "op": "list"})
    made.on_message("local/learn", b"\xff not utf-8")
    replies = [c.args for c in bus.publish_json.call_args_list]
    assert [(t, r["id"], r["error"]["code"]) for t, r in replies] == [
        ("local/learn/reply", "b", "OVERLOADED"),
        ("local/learn/reply", None, "INVALID_REQUEST"),
    ]


def test_an_unreadable_store_is_kept_aside_and_learning_starts_empty(tmp_path: Path) -> None:
    path = tmp_path / STORE_FILE
    path.parent.mkdir(parents=True)
    path.write_bytes(b"PK\x03\x04 torn")
    made, _ = learner(tmp_path)
    assert made.store is None
    assert [p.name.startswith("classes.npz.corrupt-") for p in path.parent.iterdir()] == [True]


def test_a_saved_store_is_loaded_with_the_configured_limits(tmp_path: Path) -> None:
    store = ClassStore(4)
    store.add("mug", np.ones(4))
    store.save(tmp_path / STORE_FILE)
    made, _ = learner(tmp_path, max_classes=1)
    assert made.store is not None and made.store.counts() == {"mug": 1}
    with pytest.raises(LearnError) as info:
        made.store.add("cup", np.ones(4))
    assert info.value.code == "LIMIT_REACHED"


def test_the_summary_counts_what_is_learned_under_the_configured_limits(tmp_path: Path) -> None:
    store = ClassStore(4)
    store.meta = {"model": "tflite-int8-embedding"}
    store.add("mug", np.ones(4))
    store.add("mug", np.arange(4.0))
    store.add("cup", np.ones(4))
    store.save(tmp_path / STORE_FILE)
    made, _ = learner(tmp_path, max_shots=3, max_classes=5, mode="replace")
    made.on_message("local/learn", {"id": "q", "op": "list"})  # queued: the thread is not run
    assert made.summary() == {
        "enabled": True,
        "classes": 2,
        "shots": 3,
        "mode": "replace",  # a classification model: the configured mode
        "variant": "tflite-int8-embedding",
        "limits": {"max_shots": 3, "max_classes": 5, "max_label_length": 64, "queue_size": 32},
        "queued": 1,
    }


def test_the_summary_with_nothing_learned(tmp_path: Path) -> None:
    made, _ = learner(tmp_path)
    summary = made.summary()
    assert (summary["classes"], summary["shots"], summary["variant"]) == (0, 0, None)
    assert summary["mode"] == "extend" and summary["queued"] == 0
