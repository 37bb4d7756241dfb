"""Micro-batching on every variant's real runtime (issue 19): a batch of real photos gives each
photo the scores it gets alone, in order; the store's ONNX models, exported with batch 1 fixed,
run a batch one input after the other, without error."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ggvision.serving.preprocess import decode, preprocess

from .conftest import Loaded

# Whether the variant's backend runs a batch as one inference on the store's model files.
BATCHED = {
    "tflite-fp32": True,
    "tflite-int8": True,
    "onnx-fp32": False,  # input fixed to [1, 3, 224, 224]
    "onnx-int8": False,
    "torchscript-fp32": True,
    "torchscript-int8-x86": True,
    "torchscript-int8-qnnpack": True,
}


def test_a_batch_gives_each_photo_its_own_scores(
    loaded: Loaded, lossless_photo_files: dict[str, Path]
) -> None:
    manifest = loaded.model.manifest
    tensors = [
        preprocess(decode(path.read_bytes(), spec=manifest.preprocess), manifest)
        for path in lossless_photo_files.values()
    ]
    assert loaded.backend.batchable is BATCHED[loaded.variant]
    alone = [loaded.backend.infer(t) for t in tensors]
    for size in (2, len(tensors)):
        batched = loaded.backend.infer_batch(tensors[:size])
        assert len(batched) == size
        for got, want in zip(batched, alone, strict=False):
            assert got.shape == want.shape == (manifest.output_size,)
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    # Different photos, different scores: a batch that mixed its rows up would fail above.
    assert not np.allclose(alone[0], alone[1])
    # And batch 1 still runs after a batch (the interpreter resized back).
    np.testing.assert_allclose(loaded.backend.infer(tensors[0]), alone[0], rtol=1e-4, atol=1e-4)
