"""A synthetic camera: a moving colour gradient with the frame number drawn in the top-left
corner. Frame ``n`` is a pure function of ``(n, width, height)``, so tests and demos are
reproducible and need no camera, file or extra package."""

from __future__ import annotations

import numpy as np

from ggvision_camera.config import SyntheticSource
from ggvision_camera.sources.base import FrameSource

# A 3x5 pixel font for the digits 0-9, one string of 15 bits per digit (row by row).
_FONT = {
    "0": "111101101101111",
    "1": "010110010010111",
    "2": "111001111100111",
    "3": "111001111001111",
    "4": "101101111001001",
    "5": "111100111001111",
    "6": "111100111101111",
    "7": "111001001001001",
    "8": "111101111101111",
    "9": "111101111001111",
}
GLYPHS = {d: np.array([b == "1" for b in bits]).reshape(5, 3) for d, bits in _FONT.items()}


def pattern(n: int, width: int, height: int) -> np.ndarray:
    """Frame ``n``: red follows x, green follows y, both drifting with ``n``; blue pulses."""
    x = (np.arange(width, dtype=np.int64) * 256 // width + 4 * n) % 256
    y = (np.arange(height, dtype=np.int64) * 256 // height + 2 * n) % 256
    frame = np.empty((height, width, 3), dtype=np.uint8)
    frame[:, :, 0] = x[None, :]
    frame[:, :, 1] = y[:, None]
    frame[:, :, 2] = (3 * n) % 256
    draw_number(frame, n)
    return frame


def _scale(width: int, height: int) -> int:
    """Pixels per font dot: the digits of up to 4 places fill about a quarter of the width."""
    return max(1, min(height // 40, width // 64))


def draw_number(frame: np.ndarray, n: int) -> None:
    """Draw ``n`` in white on a black box in the top-left corner (if it fits)."""
    digits = str(n)
    h, w = frame.shape[:2]
    scale = _scale(w, h)
    box_w = (4 * len(digits) + 1) * scale
    box_h = 7 * scale
    if box_w > w or box_h > h:
        return
    frame[:box_h, :box_w] = 0
    for i, d in enumerate(digits):
        glyph = np.kron(GLYPHS[d], np.ones((scale, scale), dtype=bool))
        top, left = scale, (1 + 4 * i) * scale
        frame[top : top + 5 * scale, left : left + 3 * scale][glyph] = 255


def read_number(frame: np.ndarray) -> int | None:
    """The number :func:`draw_number` drew on ``frame`` (None when there is none)."""
    h, w = frame.shape[:2]
    scale = _scale(w, h)
    half = scale // 2
    digits = ""
    for i in range(w // (4 * scale)):
        left = (1 + 4 * i) * scale
        if left + 3 * scale > w:
            break
        dots = frame[scale + half : 6 * scale : scale, left + half : left + 3 * scale : scale, 0]
        match = [
            d for d, g in GLYPHS.items() if dots.shape == g.shape and ((dots > 127) == g).all()
        ]
        if not match:
            break
        digits += match[0]
    return int(digits) if digits else None


class SyntheticPattern(FrameSource):
    type = "synthetic"
    config: SyntheticSource

    def describe(self) -> str:
        return f"synthetic {self.config.width}x{self.config.height}"

    def _open(self) -> None:
        self.frame_number = 0

    def _read(self) -> np.ndarray:
        frame = pattern(self.frame_number, self.config.width, self.config.height)
        self.frame_number += 1
        return frame
