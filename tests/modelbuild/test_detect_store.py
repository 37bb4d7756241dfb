"""Checks of the detection store build (``make models-detect`` -> build/detect-store).

The layout DETECTION_CONTRACT describes: index.json like the classification store's plus
``task`` and ``default``, each variant's manifest loads with the serving loader (sha256, labels),
the licences, and what verify.py measured (agreement.json, speed.json, the default). Without the
build (``GGV_DETECT_STORE`` overrides the directory) the tests skip - or fail under
``GGV_REQUIRE_MODELS=1`` (CI).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from ggvision.serving.models.store import Model

ROOT = Path(__file__).resolve().parents[2]
OUT = Path(os.environ.get("GGV_DETECT_STORE", ROOT / "build" / "detect-store"))
COMPONENT = ROOT / "components" / "com.custom.ObjectDetection.ModelStore" / "recipe.yaml"

# variant -> (format, precision, model file, input dtype, outputs, box format, num_classes)
EXPECTED = {
    "ssdlite-person-tflite-int8": (
        "tflite",
        "int8",
        "model.tflite",
        "uint8",
        "boxes_classes_scores_count",
        "yxyx_normalized",
        1,
    ),
    "ssdlite-person-tflite-fp32": (
        "tflite",
        "fp32",
        "model.tflite",
        "float32",
        "boxes_classes_scores_count",
        "yxyx_normalized",
        1,
    ),
    "ssdlite-person-onnx-fp32": (
        "onnx",
        "fp32",
        "model.onnx",
        "uint8",
        "boxes_classes_scores_count",
        "yxyx_normalized",
        1,
    ),
    "centernet-coco-tflite-fp32": (
        "tflite",
        "fp32",
        "model.tflite",
        "float32",
        "xyxy_score_class",
        "xyxy_input_pixels",
        80,
    ),
    "centernet-coco-tflite-fp16": (
        "tflite",
        "fp16",
        "model.tflite",
        "float32",
        "xyxy_score_class",
        "xyxy_input_pixels",
        80,
    ),
    "centernet-coco-onnx-fp32": (
        "onnx",
        "fp32",
        "model.onnx",
        "float32",
        "xyxy_score_class",
        "xyxy_input_pixels",
        80,
    ),
}


@pytest.fixture(scope="module")
def index() -> dict[str, Any]:
    if not (OUT / ".built").is_file():
        reason = f"no finished detection store at {OUT} (make models-detect)"
        if os.environ.get("GGV_REQUIRE_MODELS") == "1":
            pytest.fail(f"GGV_REQUIRE_MODELS=1 but {reason}", pytrace=False)
        pytest.skip(reason)
    return json.loads((OUT / "index.json").read_text(encoding="utf-8"))


def test_index_lists_the_contract_variants(index: dict[str, Any]) -> None:
    assert (index["schema"], index["name"], index["version"]) == (1, "detectors", "1.0.0")
    assert index["component"] == "com.custom.ObjectDetection.ModelStore"
    assert {v["variant"] for v in index["variants"]} == set(EXPECTED)
    for v in index["variants"]:
        key = v["variant"]
        assert v["task"] == "detection" and v["dir"] == key
        assert (v["format"], v["precision"]) == EXPECTED[key][:2]
        assert v["file"] == f"{key}/{EXPECTED[key][2]}" and v["manifest"] == f"{key}/manifest.json"
        assert v["size_bytes"] == (OUT / v["file"]).stat().st_size
    # no build leftovers
    assert not [p.name for p in OUT.iterdir() if p.name.startswith((".tmp-", ".old-"))]


def test_recipe_ships_every_variant(index: dict[str, Any]) -> None:
    import yaml

    recipe = yaml.safe_load(COMPONENT.read_text(encoding="utf-8"))
    zips = [a["URI"].rsplit("/", 1)[1] for a in recipe["Manifests"][0]["Artifacts"]]
    assert sorted(zips) == sorted(f"{k}.zip" for k in EXPECTED)


@pytest.mark.parametrize("key", sorted(EXPECTED))
def test_manifest(index: dict[str, Any], key: str) -> None:
    fmt, precision, file, dtype, outputs, box_format, num_classes = EXPECTED[key]
    model = Model.load(OUT / key)  # the serving loader: schema, sha256, labels count
    m = json.loads((OUT / key / "manifest.json").read_text(encoding="utf-8"))
    assert (m["task"], m["format"], m["precision"], m["file"]) == (
        "detection",
        fmt,
        precision,
        file,
    )
    assert m["input"]["dtype"] == dtype and m["input"]["layout"] == "NHWC"
    size = m["preprocess"]["resize"]
    assert m["input"]["shape"] == [1, size, size, 3]
    d = m["detection"]
    assert (d["outputs"], d["box_format"], m["num_classes"]) == (outputs, box_format, num_classes)
    assert d["resize"] in ("stretch", "letterbox")
    roles = (
        {"boxes", "classes", "scores", "count"} if outputs.startswith("boxes") else {"detections"}
    )
    assert set(d["output_index"]) == roles
    if key.startswith("ssdlite"):
        assert model.labels == ["person"] and d["nms_iou"] is None
        assert m["licence"]["weights"] == "MIT"
        assert (
            "MIT License" in (OUT / key / "LICENSE").read_text()
            and "cftang" in (OUT / key / "LICENSE").read_text()
        )
    else:
        assert (
            model.labels[0] == "person" and "cat" in model.labels and len(set(model.labels)) == 80
        )
        assert 0 < d["nms_iou"] < 1 and d["class_offset"] == 0
        assert "Vladimir Mandic" in (OUT / key / "LICENSE").read_text()
        assert "mobilenetv3_centernet" in m["licence"]["note"]
    if dtype == "uint8" and fmt == "tflite":
        q = m["input"]["quantization"]
        assert q["scale"] == pytest.approx(2 / 255, rel=1e-3) and q["zero_point"] in (127, 128)
        assert m["calibration"]["images"] > 0


def test_agreement_and_default(index: dict[str, Any]) -> None:
    agreement = json.loads((OUT / "agreement.json").read_text(encoding="utf-8"))
    speed = json.loads((OUT / "speed.json").read_text(encoding="utf-8"))
    assert agreement["threshold"] == 0.5 and agreement["min_iou"] == 0.9
    for key in EXPECTED:
        a = agreement["variants"][key]
        assert a["agrees"] and a["missing"] == 0 and a["extra"] == 0 and a["min_iou"] >= 0.9, key
        assert a["objects"] > 0
        assert {"threads_1", "threads_2"} <= set(speed["ms"][key])
    # both people photos: a person above 0.5 in the TF reference, found by every person variant
    for photo in ("astronaut", "camera"):
        assert [d["label"] for d in agreement["reference"]["ssdlite"][photo]] == ["person"]
    for photo in ("chelsea", "coffee", "motorcycle_left", "horse"):
        assert agreement["reference"]["ssdlite"][photo] == []
    person = [k for k in EXPECTED if k.startswith("ssdlite")]
    fastest = min(person, key=lambda k: speed["ms"][k]["threads_2"])
    assert index["default"] == fastest == agreement["default"]
    assert index["verified"] is True
