"""ggvision.annotate: boxes where the normalised coordinates say, the panel's text, atomic
writes in the file's own format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ggvision.annotate import annotate, save_atomic, text_lines


def _grey(width: int = 400, height: int = 300, mode: str = "RGB") -> Image.Image:
    return Image.new(mode, (width, height), (128,) * len(mode))


def _changed(before: Image.Image, after: Image.Image) -> np.ndarray:
    diff = np.abs(np.asarray(after, dtype=np.int16) - np.asarray(before, dtype=np.int16))
    return diff.reshape(diff.shape[0], diff.shape[1], -1).max(axis=2) > 0


def test_a_box_is_drawn_where_its_normalised_coordinates_say() -> None:
    image = _grey()
    box = {"xmin": 0.25, "ymin": 0.5, "xmax": 0.75, "ymax": 0.9}
    out = annotate(image, detections=[{"label": "person", "index": 0, "score": 0.91, "box": box}])
    changed = _changed(image, out)
    # The rectangle's outline: its left edge at x = 100, rows 150..270.
    assert changed[200, 100] and changed[260, 100]
    assert changed[269, 200] and changed[200, 299]
    # Inside and well outside the box: untouched.
    assert not changed[210, 200]
    assert not changed[20:120, 330:].any()
    assert out.size == image.size and image.getpixel((100, 200)) == (128, 128, 128)


def test_boxes_outside_the_image_are_clipped_not_an_error() -> None:
    image = _grey()
    box = {"xmin": -0.5, "ymin": 0.2, "xmax": 1.7, "ymax": 0.4}
    out = annotate(image, detections=[{"label": "car", "score": 0.5, "box": box}])
    changed = _changed(image, out)
    assert changed[100, 0] and changed[100, 399]


def test_the_panel_lists_predictions_then_lines() -> None:
    preds = [{"label": "tabby", "score": 0.8123}, {"label": "tiger cat", "score": 0.1}]
    assert text_lines(preds, ["12.5 fps"]) == ["tabby 0.812", "tiger cat 0.100", "12.5 fps"]
    image = _grey()
    out = annotate(image, predictions=preds, lines=["12.5 fps"])
    changed = _changed(image, out)
    assert changed[:60, :60].any() and not changed[200:, 200:].any()
    assert annotate(image) is not image and not _changed(image, annotate(image)).any()


def test_transparency_is_kept_for_png(tmp_path: Path) -> None:
    image = Image.new("RGBA", (120, 90), (0, 0, 0, 0))
    out = annotate(image, lines=["x"])
    assert out.mode == "RGBA"
    dst = save_atomic(out, tmp_path / "a.png")
    with Image.open(dst) as back:
        assert back.format == "PNG" and back.mode == "RGBA"


@pytest.mark.parametrize(("name", "fmt"), [("out.jpg", "JPEG"), ("out.png", "PNG"), ("o.x", "PNG")])
def test_save_atomic_writes_the_suffix_format_and_leaves_no_temp(
    tmp_path: Path, name: str, fmt: str
) -> None:
    dst = save_atomic(annotate(_grey(), lines=["7 ms"]), tmp_path / "sub" / name)
    with Image.open(dst) as back:
        assert back.format == fmt and back.size == (400, 300)
    assert [p.name for p in dst.parent.iterdir()] == [name]


def test_save_atomic_failure_leaves_nothing(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(OSError):
        save_atomic(_grey(), blocker / "out.png")
    assert [p.name for p in tmp_path.iterdir()] == ["file"]
