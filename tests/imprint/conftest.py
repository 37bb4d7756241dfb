"""Fixtures for imprinting on the real embedding variants of the model store (skipped, or
failed under GGV_REQUIRE_MODELS=1, without them; failed when the store's build knew a variant
it lacks), with real photos (scikit-image)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from ggvision.serving.models import backends
from ggvision.serving.models.backends.base import Backend
from ggvision.serving.models.store import DEFAULT_BACKEND, Model
from ggvision.serving.tasks.embedding import EmbeddingTask
from tests.classifier.conftest import require, require_runtime, store_root

RUNTIME = {"tflite": "ai_edge_litert", "onnx": "onnxruntime", "torchscript": "torch", "dlr": "dlr"}
# Added after the first five (by `make models`, and dlr-fp32-embedding by `make models-dlr`).
NEW_VARIANTS = [
    "torchscript-int8-x86-embedding",
    "torchscript-int8-qnnpack-embedding",
    "dlr-fp32-embedding",
]
EMBEDDING_VARIANTS = [
    "tflite-fp32-embedding",
    "tflite-int8-embedding",
    "onnx-fp32-embedding",
    "onnx-int8-embedding",
    "torchscript-fp32-embedding",
    *NEW_VARIANTS,
]
# Each variant's float twin: its embedding is compared with it.
FP32_TWIN = {
    "torchscript-int8-x86-embedding": "torchscript-fp32-embedding",
    "torchscript-int8-qnnpack-embedding": "torchscript-fp32-embedding",
    "dlr-fp32-embedding": "onnx-fp32-embedding",
}


def store_builds(root: Path) -> list[str]:
    """The variants the store's build knew (``index.json`` ``builds``; none for an older one)."""
    try:
        index = json.loads((root / "index.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    builds = index.get("builds", [])
    return [str(v) for v in builds] if isinstance(builds, list) else []


def embedding_model(variant: str) -> Model:
    pytest.importorskip("skimage", reason="scikit-image provides the photos")
    directory = store_root() / variant
    if not (directory / "manifest.json").is_file():
        if variant in store_builds(store_root()):
            pytest.fail(f"the model store {store_root()} was built with {variant} but lacks it")
        require(f"embedding variant {variant} is not in the model store {store_root()}")
    model = Model.load(directory)
    require_runtime(RUNTIME[model.manifest.format])
    return model


@dataclass
class Embedder:
    model: Model
    backend: Backend
    task: EmbeddingTask

    def raw(self, image: np.ndarray) -> np.ndarray:
        return self.backend.infer(self.task.preprocess(image, self.model))


def embedder(variant: str) -> Embedder:
    model = embedding_model(variant)
    backend = backends.create(DEFAULT_BACKEND[model.manifest.format], model, threads=2)
    backend.load()
    return Embedder(model, backend, EmbeddingTask().bind(model))


@pytest.fixture(scope="module")
def int8() -> Iterator[Embedder]:
    """The variant a device runs by default: tflite-int8-embedding."""
    e = embedder("tflite-int8-embedding")
    yield e
    e.backend.close()


@pytest.fixture(scope="session")
def store_dir() -> Path:
    return store_root()
