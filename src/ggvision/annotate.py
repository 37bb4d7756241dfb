"""Answers drawn on the image, as the Coral demos draw them: the top labels and scores of a
classification, the boxes and labels of a detection, and free lines (fps, latency) on a filled
panel in the top-left corner. One drawing for every user: ``ggvision classify --out``,
``ggvision detect --out``, the requester's annotated copies, the live view.

Pillow is imported when the first image is drawn, so a process that never annotates never
loads it.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PIL.Image import Image as PilImage

# Formats Pillow writes that keep a file's own format; anything else is written as PNG.
WRITABLE = frozenset({"JPEG", "PNG", "BMP", "WEBP"})

# Box colours, one per label index (cycled): distinct on photos, readable under white text.
_PALETTE = (
    (230, 25, 75),
    (60, 180, 75),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
    (70, 140, 140),
    (240, 50, 230),
    (128, 128, 0),
)


def text_lines(
    predictions: Iterable[Mapping[str, Any]] = (), lines: Iterable[str] = ()
) -> list[str]:
    """The panel's lines: one ``label score`` per prediction (score to 3 decimals), then
    ``lines`` as they are."""
    out = [f"{p['label']} {float(p['score']):.3f}" for p in predictions]
    out.extend(lines)
    return out


def annotate(
    image: PilImage,
    *,
    predictions: Sequence[Mapping[str, Any]] = (),
    detections: Sequence[Mapping[str, Any]] = (),
    lines: Sequence[str] = (),
) -> PilImage:
    """A copy of ``image`` (RGB, or RGBA when it has transparency) with the answer drawn on it.

    ``predictions``: ``{"label", "score"}`` (a classification's top classes), listed in the
    panel. ``detections``: ``{"label", "score", "box": {"xmin", "ymin", "xmax", "ymax"}}`` with
    the box normalised to 0..1 of this image, drawn as a rectangle with ``label score`` above
    it. ``lines``: further panel lines (e.g. ``"12.5 fps"``).
    """
    from PIL import ImageDraw, ImageFont

    out = image.convert("RGBA" if has_alpha(image) else "RGB")
    width, height = out.size
    size = max(12, min(width, height) // 24)
    font = ImageFont.load_default(size=size)
    draw = ImageDraw.Draw(out)
    pad = max(2, size // 4)
    stroke = max(2, min(width, height) // 160)

    for det in detections:
        box = det["box"]
        x0, x1 = sorted((_clip(box["xmin"]) * width, _clip(box["xmax"]) * width))
        y0, y1 = sorted((_clip(box["ymin"]) * height, _clip(box["ymax"]) * height))
        colour = _PALETTE[int(det.get("index", 0)) % len(_PALETTE)]
        draw.rectangle((x0, y0, x1, y1), outline=colour, width=stroke)
        caption = f"{det['label']} {float(det['score']):.2f}"
        left, top, right, bottom = draw.textbbox((0, 0), caption, font=font)
        tw, th = right - left, bottom - top
        # Above the box when it fits, else inside its top edge.
        ty = y0 - th - 2 * pad if y0 - th - 2 * pad >= 0 else y0
        draw.rectangle((x0, ty, x0 + tw + 2 * pad, ty + th + 2 * pad), fill=colour)
        draw.text((x0 + pad - left, ty + pad - top), caption, fill=(255, 255, 255), font=font)

    panel = text_lines(predictions, lines)
    if panel:
        text = "\n".join(panel)
        _, _, right, bottom = draw.multiline_textbbox((pad, pad), text, font=font)
        draw.rectangle((0, 0, right + pad, bottom + pad), fill=(0, 0, 0))
        draw.multiline_text((pad, pad), text, fill=(255, 255, 255), font=font)
    return out


def save_atomic(image: PilImage, dst: Path, fmt: str | None = None) -> Path:
    """Write ``image`` to ``dst`` through a temporary file beside it and a rename, so a reader
    never sees half a file. ``fmt`` defaults to the suffix's format (JPEG for ``.jpg``); OSError
    when it cannot be written."""
    from PIL import Image

    if fmt is None:
        fmt = Image.registered_extensions().get(dst.suffix.lower(), "PNG")
    fmt = fmt if fmt in WRITABLE else "PNG"
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".annotate-", suffix=dst.suffix, dir=dst.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            if fmt in ("JPEG", "WEBP"):
                image.convert("RGB").save(out, format=fmt, quality=90)
            else:
                image.save(out, format=fmt)
        os.replace(tmp, dst)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return dst


def has_alpha(image: PilImage) -> bool:
    return image.mode in ("RGBA", "LA", "PA") or (
        image.mode == "P" and "transparency" in image.info
    )


def _clip(value: Any) -> float:
    return min(1.0, max(0.0, float(value)))
