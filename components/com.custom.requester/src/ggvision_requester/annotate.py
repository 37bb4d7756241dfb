"""Annotated copies: the top label and score drawn on the image (:mod:`ggvision.annotate`), same
name and size, written atomically.

Pillow is imported when the first copy is drawn, so a run without ``annotateDirectory`` never
loads it.
"""

from __future__ import annotations

from pathlib import Path

from ggvision.annotate import WRITABLE, save_atomic
from ggvision.annotate import annotate as draw
from ggvision.errors import GgvisionError


class AnnotateError(GgvisionError):
    """An annotated copy could not be read or written."""


def annotate(src: Path, dst_dir: Path, text: str) -> Path:
    """Write ``src`` with ``text`` in its top-left corner to ``dst_dir`` (same name and size)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(src) as opened:
            fmt = opened.format or "PNG"
            image = draw(opened, lines=[text])
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as exc:
        raise AnnotateError(f"cannot read {src}: {exc}") from exc
    name = src.name if fmt in WRITABLE else src.stem + ".png"
    dst = dst_dir / name
    try:
        return save_atomic(image, dst, fmt)
    except OSError as exc:
        raise AnnotateError(f"cannot write {dst}: {exc}") from exc
