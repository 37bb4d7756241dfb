"""Detection runs unbatched (issue 19): its task reads every output of the model
(``Backend.infer_all``), so the worker never batches it, whatever ``maxBatch`` says."""

from __future__ import annotations

from pathlib import Path

from ggvision.serving import ImageLoader, Worker
from ggvision.serving.models.loading import ActiveModel
from tests.reliability.test_fuzz_contract import RecordingBus

from .conftest import load_variant


def test_a_detector_is_never_batched(dstore: Path, tmp_path: Path) -> None:
    loaded = load_variant(dstore, "ssdlite-person-tflite-int8")
    try:
        assert loaded.task.all_outputs
        assert not loaded.backend.batchable
        worker = Worker(
            RecordingBus(),  # type: ignore[arg-type]
            result_topic="local/result",
            loader=ImageLoader([str(tmp_path)], max_bytes=1 << 20, max_pixels=1 << 20),
            queue_size=8,
            top_k=3,
            threshold=0.5,
            reply_topic_allowed=lambda topic: False,
            active=ActiveModel.of(loaded.model, loaded.backend, loaded.task),
            max_batch=8,
        )
        assert worker.batch_limit() == 1
    finally:
        loaded.backend.close()
