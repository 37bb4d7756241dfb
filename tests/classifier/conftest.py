"""Fixtures for the classifier's model tests: the model store, its float reference, the sample
photos as real image files, and one loaded backend per variant.

Without a model store (``build/model-store`` or ``$GGV_MODEL_STORE``), a variant or a runtime,
the tests that need it skip with the reason, unless ``GGV_REQUIRE_MODELS=1`` (CI), where they
fail instead.
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import pytest
from ggvision_classifier.app import ROLE
from PIL import Image

from ggvision.serving.models import backends
from ggvision.serving.models.backends.base import Backend
from ggvision.serving.models.store import DEFAULT_BACKEND, Model
from ggvision.serving.preprocess import decode, preprocess
from ggvision.serving.tasks.classification import topk

REPO = Path(__file__).resolve().parents[2]

# variant -> the runtime module its backend imports
VARIANTS: dict[str, str] = {
    "tflite-fp32": "ai_edge_litert",
    "tflite-int8": "ai_edge_litert",
    "onnx-fp32": "onnxruntime",
    "onnx-int8": "onnxruntime",
    "torchscript-fp32": "torch",
    "torchscript-int8-x86": "torch",
    "torchscript-int8-qnnpack": "torch",
}
INT8 = [v for v in VARIANTS if "int8" in v]

# The photos reference.json names, as files: colour as JPEG (quality 95), greyscale as 8-bit
# PNG, which preprocess turns into RGB as a camera's grey frames would be.
PHOTOS: dict[str, str] = {
    "chelsea": "chelsea.jpg",
    "coffee": "coffee.jpg",
    "astronaut": "astronaut.jpg",
    "rocket": "rocket.jpg",
    "stereo_motorcycle": "stereo_motorcycle.jpg",
    "camera": "camera.png",
    "clock": "clock.png",
}


def store_root() -> Path:
    env = os.environ.get("GGV_MODEL_STORE")
    return Path(env) if env else REPO / "build" / "model-store"


def require(reason: str) -> NoReturn:
    """Skip, or fail when CI demands the models (GGV_REQUIRE_MODELS=1)."""
    if os.environ.get("GGV_REQUIRE_MODELS") == "1":
        pytest.fail(f"GGV_REQUIRE_MODELS=1 but {reason}", pytrace=False)
    pytest.skip(reason)


def require_runtime(module: str) -> None:
    if importlib.util.find_spec(module) is None:
        require(f"runtime {module} is not installed")


def default_store() -> Path:
    """The built model store (skip, or fail under GGV_REQUIRE_MODELS=1, when there is none)."""
    root = store_root()
    if not (root / "reference.json").is_file():
        require(f"no model store at {root} (build it with `make models`, or set GGV_MODEL_STORE)")
    return root


@pytest.fixture(scope="session")
def store() -> Path:
    return default_store()


@pytest.fixture(scope="session")
def reference(store: Path) -> dict[str, list[tuple[int, float]]]:
    """photo -> the float PyTorch model's top-5 as (index, probability)."""
    raw = json.loads((store / "reference.json").read_text(encoding="utf-8"))
    return {
        name: [(int(p["index"]), float(p["prob"])) for p in photo["top5"]]
        for name, photo in raw["photos"].items()
    }


def variant_model(store: Path, variant: str) -> Model:
    directory = store / variant
    if not (directory / "manifest.json").is_file():
        require(f"variant {variant} is not in the model store {store}")
    require_runtime(VARIANTS[variant])
    return Model.load(directory)


def sample_photo(name: str) -> np.ndarray:
    import skimage.data

    if name == "stereo_motorcycle":
        pixels: np.ndarray = skimage.data.stereo_motorcycle()[0]  # type: ignore[no-untyped-call]
    else:
        pixels = getattr(skimage.data, name)()
    return pixels


def _write_photos(folder: Path, *, lossless: bool) -> dict[str, Path]:
    pytest.importorskip("skimage", reason="scikit-image provides the sample photos")
    files = {}
    for name, filename in PHOTOS.items():
        path = folder / (Path(filename).stem + ".png" if lossless else filename)
        img = Image.fromarray(sample_photo(name))
        if path.suffix == ".jpg":
            img.save(path, quality=95)
        else:
            img.save(path)
        files[name] = path
    return files


@pytest.fixture(scope="session")
def photo_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The sample photos as a user has them: colour as JPEG (quality 95), greyscale as PNG."""
    return _write_photos(tmp_path_factory.mktemp("photos"), lossless=False)


@pytest.fixture(scope="session")
def lossless_photo_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same photos as PNG: exactly the pixels reference.json was computed on. Agreement
    with the float reference is judged on these, so JPEG noise does not flip near-ties (the cat
    photo's tiger cat / tabby / Egyptian cat are within 0.02 of each other)."""
    return _write_photos(tmp_path_factory.mktemp("photos-png"), lossless=True)


@dataclass
class Loaded:
    variant: str
    model: Model
    backend: Backend

    def classify(self, path: Path, k: int = 5, **decode_args: Any) -> list[tuple[int, float]]:
        """The production path: bytes -> decode -> preprocess -> infer -> top-k."""
        manifest = self.model.manifest
        image = decode(path.read_bytes(), spec=manifest.preprocess, **decode_args)
        scores = self.backend.infer(preprocess(image, manifest))
        return topk(scores, k, 0.0, manifest.output.kind)


def load_variant(store: Path, variant: str, **options: Any) -> Loaded:
    model = variant_model(store, variant)
    backend = backends.create(
        DEFAULT_BACKEND[model.manifest.format],
        model,
        threads=1,
        options=options or None,
        events=ROLE,  # the classifier's event keys
    )
    backend.load()
    return Loaded(variant, model, backend)


@pytest.fixture(scope="module", params=list(VARIANTS))
def loaded(request: pytest.FixtureRequest, store: Path) -> Iterator[Loaded]:
    """Each variant on its default backend, loaded once per test module."""
    item = load_variant(store, request.param)
    yield item
    item.backend.close()


@pytest.fixture(scope="module")
def predictions(
    loaded: Loaded, lossless_photo_files: dict[str, Path]
) -> dict[str, list[tuple[int, float]]]:
    """photo -> this variant's top-5 on the photo's (lossless) file."""
    return {name: loaded.classify(path) for name, path in lossless_photo_files.items()}
