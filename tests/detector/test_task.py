"""The detection task's decoding, on outputs written by hand (the real models are run in
test_photos.py): both output layouts, box formats, class offset, count, NMS, letterbox undone,
thresholds, limits, the label allow-list, preprocessing dtypes and EXIF rotation."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from ggvision.serving.models.store import Manifest, Model, ModelError
from ggvision.serving.preprocess import decode
from ggvision.serving.tasks import get_task
from ggvision.serving.tasks.detection import (
    DetectionTask,
    Geometry,
    detections,
    iou_matrix,
    nms,
)


def make_model(
    detection: dict[str, Any],
    *,
    labels: tuple[str, ...] = ("person", "cat", "cup"),
    side: int = 100,
    dtype: str = "float32",
    quantization: dict[str, Any] | None = None,
    mean: float = 0.0,
    std: float = 1.0,
) -> Model:
    manifest = Manifest.model_validate(
        {
            "name": "t",
            "version": "1",
            "variant": "t",
            "task": "detection",
            "format": "onnx",
            "precision": "fp32",
            "file": "m.onnx",
            "num_classes": len(labels),
            "input": {
                "shape": [1, side, side, 3],
                "layout": "NHWC",
                "dtype": dtype,
                "quantization": quantization,
            },
            "preprocess": {
                "resize": side,
                "resize_only": True,
                "interpolation": "bilinear",
                "mean": [mean] * 3,
                "std": [std] * 3,
            },
            "detection": detection,
        }
    )
    return Model(Path("/nonexistent/t"), manifest, list(labels))


SSD = {
    "outputs": "boxes_classes_scores_count",
    "output_index": {"boxes": 0, "classes": 1, "scores": 2, "count": 3},
    "box_format": "yxyx_normalized",
    "class_offset": 0,
    "nms_iou": None,
    "resize": "stretch",
}
CENTERNET = {
    "outputs": "xyxy_score_class",
    "output_index": {"detections": 0},
    "box_format": "xyxy_input_pixels",
    "class_offset": 0,
    "nms_iou": 0.5,
    "resize": "letterbox",
}


def ssd_outputs(rows: list[tuple[list[float], float, float]], n: int = 6) -> list[np.ndarray]:
    """(yxyx box, class, score) rows -> boxes, classes, scores, count; the rows past the count
    hold garbage, as TFLite leaves them."""
    boxes = np.full((1, n, 4), 7.0, np.float32)
    classes = np.full((1, n), 1.0, np.float32)
    scores = np.full((1, n), 2.6e22, np.float32)
    for i, (b, c, s) in enumerate(rows):
        boxes[0, i], classes[0, i], scores[0, i] = b, c, s
    return [boxes, classes, scores, np.asarray([len(rows)], np.float32)]


def run(model: Model, outputs: list[np.ndarray], geometry: Geometry | None = None, **kw: Any):
    args = {"top_k": 100, "threshold": 0.0, **kw}
    return detections(outputs, model, geometry, **args)


def test_the_task_is_built_in_and_wants_every_output() -> None:
    task = get_task("detection")
    assert isinstance(task, DetectionTask)
    assert task.all_outputs is True


def test_ssd_rows_past_the_count_are_never_read_and_yxyx_becomes_xyxy() -> None:
    model = make_model(SSD)
    found = run(
        model, ssd_outputs([([0.1, 0.2, 0.5, 0.6], 0, 0.9), ([0.0, 0.0, 1.0, 1.0], 2, 0.4)])
    )
    assert [(d.label, d.score) for d in found] == [("person", 0.9), ("cup", 0.4)]
    b = found[0].box
    assert (b.xmin, b.ymin, b.xmax, b.ymax) == pytest.approx((0.2, 0.1, 0.6, 0.5))


def test_ssd_boxes_are_clipped_to_the_image() -> None:
    model = make_model(SSD)
    found = run(model, ssd_outputs([([-0.05, 0.2, 1.07, 0.6], 0, 0.9)]))
    b = found[0].box
    assert (b.ymin, b.ymax) == (0.0, 1.0)


def test_output_index_is_honoured() -> None:
    spec = {**SSD, "output_index": {"scores": 0, "boxes": 1, "count": 2, "classes": 3}}
    boxes, classes, scores, count = ssd_outputs([([0.1, 0.1, 0.3, 0.3], 1, 0.8)])
    found = run(make_model(spec), [scores, boxes, count, classes])
    assert [(d.label, d.score) for d in found] == [("cat", 0.8)]


def test_class_offset_maps_model_classes_to_labels_and_drops_the_background() -> None:
    model = make_model({**SSD, "class_offset": 1})
    found = run(
        model,
        ssd_outputs([([0.1, 0.1, 0.3, 0.3], 1, 0.9), ([0.5, 0.5, 0.9, 0.9], 0, 0.8)]),
    )
    assert [(d.label, d.index) for d in found] == [("person", 0)]


def test_classes_beyond_the_labels_are_dropped() -> None:
    found = run(make_model(SSD), ssd_outputs([([0.1, 0.1, 0.3, 0.3], 7, 0.9)]))
    assert found == []


def test_xyxy_pixels_and_per_class_nms() -> None:
    model = make_model(CENTERNET)
    rows = np.asarray(
        [
            [
                [10, 10, 50, 50, 0.9, 1],  # cat
                [12, 11, 51, 52, 0.8, 1],  # the same cat again: suppressed
                [12, 11, 51, 52, 0.7, 2],  # a cup there: another class, kept
                [60, 60, 90, 90, 0.6, 1],  # another cat, apart: kept
                [0, 0, 0, 0, 0.0, 0],  # padding rows of a fixed-size output
            ]
        ],
        np.float32,
    )
    found = run(model, [rows], threshold=0.05)
    assert [(d.label, d.score) for d in found] == [("cat", 0.9), ("cup", 0.7), ("cat", 0.6)]
    b = found[0].box
    assert (b.xmin, b.ymin, b.xmax, b.ymax) == pytest.approx((0.1, 0.1, 0.5, 0.5))


def test_without_nms_iou_overlapping_boxes_all_stay() -> None:
    model = make_model({**CENTERNET, "nms_iou": None})
    rows = np.asarray([[[10, 10, 50, 50, 0.9, 1], [12, 11, 51, 52, 0.8, 1]]], np.float32)
    assert len(run(model, [rows])) == 2


def test_nms_keeps_the_best_of_each_overlapping_group() -> None:
    boxes = np.asarray([[0, 0, 1, 1], [0, 0, 0.9, 1], [2, 2, 3, 3], [0, 0, 1, 1]], np.float32)
    scores = np.asarray([0.5, 0.9, 0.4, 0.3], np.float32)
    classes = np.asarray([0, 0, 0, 1])
    assert nms(boxes, scores, classes, 0.5).tolist() == [1, 2, 3]
    assert iou_matrix(boxes[:1], boxes[1:2])[0, 0] == pytest.approx(0.9)


def test_sorted_thresholded_limited_and_filtered_by_label() -> None:
    model = make_model(SSD)
    rows = [
        ([0.0, 0.0, 0.2, 0.2], 0, 0.3),
        ([0.3, 0.3, 0.5, 0.5], 1, 0.95),
        ([0.6, 0.6, 0.8, 0.8], 0, 0.7),
        ([0.1, 0.6, 0.3, 0.9], 2, 0.6),
    ]
    out = ssd_outputs(rows)
    assert [d.score for d in run(model, out)] == [0.95, 0.7, 0.6, 0.3]
    assert [d.score for d in run(model, out, threshold=0.6)] == [0.95, 0.7, 0.6]
    assert [d.score for d in run(model, out, top_k=2)] == [0.95, 0.7]
    assert [d.label for d in run(model, out, labels=["person"])] == ["person", "person"]
    limited = make_model({**SSD, "max_detections": 1})
    assert len(run(limited, out)) == 1


def test_letterbox_geometry_is_undone() -> None:
    # 600x400 into 300x300: scaled by 0.5 to 300x200, 50 pixels of padding above and below.
    g = Geometry.letterbox(600, 400, 300)
    assert (g.inner_w, g.inner_h, g.pad_x, g.pad_y) == (300, 200, 0, 50)
    input_box = np.asarray([[0.0, 50 / 300, 1.0, 250 / 300], [0.5, 0.5, 1.0, 1.0]], np.float32)
    assert g.to_original(input_box) == pytest.approx(
        np.asarray([[0.0, 0.0, 1.0, 1.0], [0.5, 0.5, 1.0, 1.0]]), abs=1e-6
    )
    tall = Geometry.letterbox(200, 800, 400)
    assert (tall.inner_w, tall.inner_h, tall.pad_x, tall.pad_y) == (100, 400, 150, 0)
    assert tall.to_original(np.asarray([[0.5, 0.25, 0.625, 0.5]], np.float32)) == pytest.approx(
        np.asarray([[0.5, 0.25, 1.0, 0.5]]), abs=1e-6
    )


def test_a_box_on_the_padding_only_is_dropped() -> None:
    model = make_model({**SSD, "resize": "letterbox"})
    g = Geometry.letterbox(600, 400, 100)  # padding: rows 0..16 and 83..100 of the input
    found = run(model, ssd_outputs([([0.0, 0.1, 0.1, 0.5], 0, 0.9)]), g)
    assert found == []


def _png(img: Image.Image, **save: Any) -> bytes:
    buf = io.BytesIO()
    img.save(buf, **save)
    return buf.getvalue()


def test_letterbox_preprocessing_centres_the_image_on_the_fill() -> None:
    model = make_model({**CENTERNET, "letterbox_fill": 114}, side=100, dtype="uint8")
    red = Image.new("RGB", (200, 100), (255, 0, 0))
    tensor, geometry = DetectionTask().prepare(red, model)
    assert tensor.shape == (1, 100, 100, 3) and tensor.dtype == np.uint8
    assert (geometry.pad_x, geometry.pad_y, geometry.inner_w, geometry.inner_h) == (0, 25, 100, 50)
    assert (tensor[0, 10, 50] == 114).all()  # padding
    assert tensor[0, 50, 50].tolist() == [255, 0, 0]  # the image


def test_raw_uint8_input_keeps_the_pixels_and_float_is_normalised() -> None:
    pixels = np.random.default_rng(0).integers(0, 256, (100, 100, 3), dtype=np.uint8)
    raw = make_model(SSD, dtype="uint8")
    tensor, _ = DetectionTask().prepare(pixels, raw)
    assert np.array_equal(tensor[0], pixels)
    fl = make_model(SSD, mean=127.5, std=127.5)
    tensor, _ = DetectionTask().prepare(pixels, fl)
    assert tensor.dtype == np.float32
    assert tensor[0] == pytest.approx((pixels.astype(np.float32) - 127.5) / 127.5)


def test_quantized_input_is_quantized() -> None:
    pixels = np.asarray([[[0, 127, 255]]], np.uint8).repeat(100, 0).repeat(100, 1)
    q = make_model(
        SSD,
        dtype="uint8",
        quantization={"scale": 0.01, "zero_point": 100},
        mean=127.5,
        std=127.5,
    )
    tensor, _ = DetectionTask().prepare(pixels, q)
    # x = (p - 127.5) / 127.5 -> round(x / 0.01 + 100): 0 -> 0, 127 -> 99.6, 255 -> 200
    assert tensor[0, 0, 0].tolist() == [0, 100, 200]


def test_an_exif_rotated_photo_is_measured_upright() -> None:
    upright = Image.new("RGB", (120, 60), (0, 0, 255))
    stored = upright.rotate(90, expand=True)  # 60x120 on disk
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    image = decode(_png(stored, format="JPEG", exif=exif.tobytes()))
    assert image.size == (60, 120)
    _, geometry = DetectionTask().prepare(image, make_model(SSD))
    assert (geometry.width, geometry.height) == (120, 60)


def test_check_refuses_outputs_that_do_not_fit_the_layout() -> None:
    task = DetectionTask()
    model = make_model(SSD)
    with pytest.raises(ModelError) as err:
        task.check(model, [np.zeros((1, 10, 4), np.float32)])
    assert "needs 4" in str(err.value)
    with pytest.raises(ModelError) as err2:
        task.check(make_model(CENTERNET), [np.zeros((1, 10, 5), np.float32)])
    assert "6 values" in str(err2.value)
    task.check(model, ssd_outputs([]))  # the right shapes: accepted


def test_a_manifest_without_detection_is_refused() -> None:
    model = make_model(SSD)
    model.manifest.__pydantic_extra__.pop("detection")  # type: ignore[union-attr]
    with pytest.raises(ModelError) as err:
        DetectionTask().check(model, ssd_outputs([]))
    assert "needs 'detection'" in str(err.value)
