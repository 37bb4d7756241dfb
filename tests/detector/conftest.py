"""Fixtures for the detector's tests: the detection model store, its variants loaded on their
runtimes, the sample photos as files and their hand-drawn ground truth (ground_truth.json).

Without the store (``build/detect-store`` or ``$GGV_DETECT_STORE``) or a runtime, the tests that
need it skip with the reason, unless ``GGV_REQUIRE_MODELS=1`` (CI), where they fail instead.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from ggvision.serving.models import backends
from ggvision.serving.models.backends.base import Backend
from ggvision.serving.models.store import DEFAULT_BACKEND, Model
from ggvision.serving.preprocess import decode
from ggvision.serving.tasks import Task, get_task
from ggvision.serving.tasks.detection import iou_matrix
from tests.classifier.conftest import REPO, require, require_runtime, sample_photo

HERE = Path(__file__).resolve().parent
GROUND_TRUTH: dict[str, Any] = json.loads((HERE / "ground_truth.json").read_text())["photos"]
RUNTIME = {"tflite": "ai_edge_litert", "onnx": "onnxruntime"}


def store_path() -> Path:
    env = os.environ.get("GGV_DETECT_STORE")
    return Path(env) if env else REPO / "build" / "detect-store"


def _variants() -> tuple[list[str], list[str]]:
    """(person-only, COCO) variants: every variant of the built store (by its number of
    classes), or the contract's when there is no store (their tests then skip)."""
    person = [
        "ssdlite-person-tflite-int8",
        "ssdlite-person-tflite-fp32",
        "ssdlite-person-onnx-fp32",
    ]
    coco = ["centernet-coco-onnx-fp32", "centernet-coco-tflite-fp32"]
    try:
        index = json.loads((store_path() / "index.json").read_text())
        manifests = {
            v["variant"]: json.loads((store_path() / v["manifest"]).read_text())
            for v in index["variants"]
        }
    except (OSError, ValueError, KeyError):
        return person, coco
    person = [v for v, m in manifests.items() if m.get("num_classes") == 1]
    coco = [v for v, m in manifests.items() if m.get("num_classes") != 1]
    return person, coco


PERSON, COCO = _variants()


def detect_store() -> Path:
    root = store_path()
    if not (root / "index.json").is_file():
        require(f"no detection model store at {root} (build it with `make models-detect`)")
    return root


def variant_model(store: Path, variant: str) -> Model:
    directory = store / variant
    if not (directory / "manifest.json").is_file():
        require(f"variant {variant} is not in the detection model store {store}")
    model = Model.load(directory)
    require_runtime(RUNTIME[model.manifest.format])
    return model


@dataclass
class Loaded:
    """One variant on its default runtime, run the way the detector runs it."""

    variant: str
    model: Model
    backend: Backend
    task: Task

    def detect(
        self,
        image: Image.Image | np.ndarray,
        *,
        threshold: float = 0.5,
        top_k: int = 100,
        labels: list[str] | None = None,
    ) -> list[dict[str, Any]]:
        tensor, context = self.task.prepare(image, self.model)
        answer = self.task.answer(
            self.backend.infer_all(tensor),
            self.model,
            top_k=top_k,
            threshold=threshold,
            context=context,
            options={"labels": labels or []},
        )
        return [d.model_dump() for d in answer.detections or []]

    def detect_file(self, path: Path, **kwargs: Any) -> list[dict[str, Any]]:
        return self.detect(decode(path.read_bytes()), **kwargs)


def load_variant(store: Path, variant: str) -> Loaded:
    model = variant_model(store, variant)
    backend = backends.create(DEFAULT_BACKEND[model.manifest.format], model, threads=2)
    backend.load()
    return Loaded(variant, model, backend, get_task(model.manifest.task))


@pytest.fixture(scope="session")
def dstore() -> Path:
    return detect_store()


@pytest.fixture(scope="module", params=PERSON + COCO)
def loaded(request: pytest.FixtureRequest, dstore: Path) -> Iterator[Loaded]:
    item = load_variant(dstore, request.param)
    yield item
    item.backend.close()


@pytest.fixture(scope="session")
def photo_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The ground truth's photos as a user has them: colour as JPEG (quality 95), grey as PNG."""
    pytest.importorskip("skimage", reason="scikit-image provides the sample photos")
    folder = tmp_path_factory.mktemp("detect-photos")
    files = {}
    for name in GROUND_TRUTH:
        pixels = sample_photo(name)
        path = folder / (f"{name}.jpg" if pixels.ndim == 3 else f"{name}.png")
        Image.fromarray(pixels).save(path, **({"quality": 95} if path.suffix == ".jpg" else {}))
        files[name] = path
    return files


def box(d: dict[str, Any]) -> np.ndarray:
    b = d["box"]
    return np.asarray([[b["xmin"], b["ymin"], b["xmax"], b["ymax"]]], dtype=np.float64)


def iou(a: dict[str, Any] | list[float], b: dict[str, Any] | list[float]) -> float:
    aa = box(a) if isinstance(a, dict) else np.asarray([a], dtype=np.float64)
    bb = box(b) if isinstance(b, dict) else np.asarray([b], dtype=np.float64)
    return float(iou_matrix(aa, bb)[0, 0])
