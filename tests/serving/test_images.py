"""The image loader's memory bounds: a JPEG over ``max_decode_pixels`` decodes at a reduced DCT
scale (never below the short-side floor, never for other formats), and ``release`` trims the heap
only after a large decode."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from ggvision.serving import images
from ggvision.serving.images import MIN_DECODE_SIDE, ImageLoader, reduced_scale


def encoded(width: int, height: int, fmt: str = "JPEG") -> bytes:
    pixels = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format=fmt)
    return out.getvalue()


@pytest.mark.parametrize(
    ("size", "limit", "scale"),
    [
        ((7200, 5000), 16_000_000, 2),  # 36 MP -> 9 MP
        ((7200, 5000), 2_000_000, 4),  # a short side of 1250 stops it at 1/4
        ((7200, 5000), 0, 1),  # no limit
        ((4000, 3000), 16_000_000, 1),  # 12 MP fits
        ((36000, 1000), 16_000_000, 1),  # a panorama's short side is already at the floor
        ((40000, 40000), 1_000_000, 8),  # 1/8 is the smallest DCT scale
    ],
)
def test_reduced_scale(size: tuple[int, int], limit: int, scale: int) -> None:
    assert reduced_scale(*size, limit) == scale


def loader(limit: int, draft_size: int | None = None) -> ImageLoader:
    return ImageLoader(
        [], max_bytes=1 << 26, max_pixels=40_000_000, max_decode_pixels=limit, draft_size=draft_size
    )


def test_a_jpeg_over_the_limit_decodes_at_reduced_scale_and_others_in_full() -> None:
    jpeg = encoded(4096, 2048)
    assert loader(4_000_000).decode(jpeg).size == (2048, 1024)
    assert loader(0).decode(jpeg).size == (4096, 2048)  # 0: the limit is off
    assert loader(4_000_000, draft_size=257).decode(jpeg).size == (1024, 512)  # fast: as before
    assert loader(4_000_000).decode(encoded(4096, 2048, "PNG")).size == (4096, 2048)
    assert min(loader(1024).decode(jpeg).size) >= MIN_DECODE_SIDE


def test_release_trims_the_heap_only_after_a_large_decode(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    trims: list[int] = []
    monkeypatch.setattr(images, "trim_heap", lambda: trims.append(1) or True)
    small = loader(0)
    small.decode(encoded(640, 480))
    small.release()
    assert trims == []
    small.decode(encoded(2500, 2000))  # 5 MP, over TRIM_AFTER_PIXELS
    small.release()
    small.release()  # once per decode
    assert trims == [1]


def test_trim_heap_runs_on_linux() -> None:
    assert images.trim_heap() is (images._malloc_trim() is not None)
