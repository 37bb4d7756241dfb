"""Annotated copies: the top label and score drawn on the image, on a filled box.

Pillow is imported when the first copy is drawn, so a run without ``annotateDirectory`` never
loads it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from ggvision.errors import GgvisionError

if TYPE_CHECKING:
    from PIL.Image import Image as PilImage

# Formats Pillow writes that keep the original's name; anything else is written as PNG.
_WRITABLE = {"JPEG", "PNG", "BMP", "WEBP"}


class AnnotateError(GgvisionError):
    """An annotated copy could not be read or written."""


def annotate(src: Path, dst_dir: Path, text: str) -> Path:
    """Write ``src`` with ``text`` in its top-left corner to ``dst_dir`` (same name and size)."""
    from PIL import Image, ImageDraw, ImageFont, UnidentifiedImageError

    try:
        with Image.open(src) as opened:
            fmt = opened.format or "PNG"
            image = opened.convert("RGBA" if fmt != "JPEG" and _has_alpha(opened) else "RGB")
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as exc:
        raise AnnotateError(f"cannot read {src}: {exc}") from exc
    size = max(12, min(image.size) // 24)
    font = ImageFont.load_default(size=size)
    draw = ImageDraw.Draw(image)
    pad = max(2, size // 4)
    _, _, right, bottom = draw.textbbox((pad, pad), text, font=font)
    draw.rectangle((0, 0, right + pad, bottom + pad), fill=(0, 0, 0))
    draw.text((pad, pad), text, fill=(255, 255, 255), font=font)

    name = src.name if fmt in _WRITABLE else src.stem + ".png"
    dst = dst_dir / name
    try:
        dst_dir.mkdir(parents=True, exist_ok=True)
        # Write beside the target, then rename: a reader never sees half a file.
        fd, tmp = tempfile.mkstemp(prefix=".annotate-", suffix=dst.suffix, dir=dst_dir)
        try:
            with os.fdopen(fd, "wb") as out:
                if fmt in ("JPEG", "WEBP"):
                    image.save(out, format=fmt, quality=90)
                else:
                    image.save(out, format=fmt if fmt in _WRITABLE else "PNG")
            os.replace(tmp, dst)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise AnnotateError(f"cannot write {dst}: {exc}") from exc
    return dst


def _has_alpha(image: PilImage) -> bool:
    return image.mode in ("RGBA", "LA", "PA") or (
        image.mode == "P" and "transparency" in image.info
    )
