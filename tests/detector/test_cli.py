"""``ggvision detect``: through the ``ggvision`` command (its plug-in entry point), on real
photos and the real models: ``--json`` shaped like ``ggvision classify --json``, ``--out`` writes
the image with the boxes drawn, bad arguments and missing models exit 2, a bad image 1."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
from ggvision_detector import detect_cli
from PIL import Image

from tests.detector.conftest import GROUND_TRUTH, iou


def ggvision(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ggvision.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_json_is_a_list_with_one_object_per_image(
    dstore: Path, photo_files: dict[str, Path]
) -> None:
    images = [str(photo_files["astronaut"]), str(photo_files["coffee"])]
    proc = ggvision("detect", *images, "--model-store", str(dstore), "--json")
    assert proc.returncode == 0, proc.stderr
    results: list[dict[str, Any]] = json.loads(proc.stdout)
    assert [r["image"] for r in results] == images
    for r in results:
        assert set(r) == {"image", "model", "timing_ms", "detections"}
        assert set(r["model"]) == {
            "name",
            "version",
            "variant",
            "backend",
            "precision",
            "threads",
            "load_ms",
        }
        assert set(r["timing_ms"]) == {"decode", "preprocess", "inference"}
    index = json.loads((dstore / "index.json").read_text())
    assert results[0]["model"]["variant"] == index["default"]
    (person,) = results[0]["detections"]
    assert person["label"] == "person" and set(person["box"]) == {"xmin", "ymin", "xmax", "ymax"}
    assert iou(person, GROUND_TRUTH["astronaut"]["objects"][0]["box"]) >= 0.5
    assert results[1]["detections"] == []


def test_variant_threshold_and_labels(dstore: Path, photo_files: dict[str, Path]) -> None:
    results = detect_cli.run(
        [photo_files["coffee"]],
        dstore,
        "centernet-coco-onnx-fp32",
        score_threshold=0.3,
        labels=["cup"],
    )
    (r,) = results
    assert r["model"]["variant"] == "centernet-coco-onnx-fp32"
    assert [d["label"] for d in r["detections"]] == ["cup"]
    assert all(d["score"] >= 0.3 for d in r["detections"])


def test_out_draws_the_boxes(dstore: Path, photo_files: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "annotated.jpg"
    proc = ggvision(
        "detect", str(photo_files["astronaut"]), "--model-store", str(dstore), "--out", str(out)
    )
    assert proc.returncode == 0, proc.stderr
    assert "person" in proc.stdout and str(out) in proc.stdout
    drawn = np.asarray(Image.open(out).convert("RGB"), dtype=np.int16)
    original = np.asarray(Image.open(photo_files["astronaut"]).convert("RGB"), dtype=np.int16)
    assert drawn.shape == original.shape
    changed = np.abs(drawn - original).max(axis=2) > 60
    # The box's outline is drawn: pixels change along its edges, not all over the photo.
    assert 0.005 < changed.mean() < 0.3
    several = tmp_path / "many.png"
    images = [str(photo_files["camera"]), str(photo_files["coffee"])]
    proc = ggvision("detect", *images, "--model-store", str(dstore), "--out", str(several))
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in tmp_path.glob("many-*.png")) == [
        "many-00-camera.png",
        "many-01-coffee.png",
    ]


def test_errors_exit_codes(dstore: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    proc = ggvision("detect", str(bad), "--model-store", str(dstore), "--json")
    assert proc.returncode == 1
    assert "cannot be decoded" in json.loads(proc.stdout)[0]["error"]
    proc = ggvision("detect", str(bad), "--model-store", str(tmp_path / "none"))
    assert proc.returncode == 2 and "no model at" in proc.stderr
    proc = ggvision("detect", str(bad), "--model-store", str(dstore), "--score-threshold", "3")
    assert proc.returncode == 2
