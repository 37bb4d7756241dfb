"""What every frame source implements. Public methods own state checks, conversion and logging;
subclasses implement the small ``_open`` / ``_read`` / ``_close`` hooks."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np
from PIL import Image

from ggvision_camera.config import Roi
from ggvision_camera.errors import SourceError, SourceUnavailable

log = logging.getLogger(__name__)


class FrameSource(ABC):
    """One camera, stream or file. Not thread-safe: the capture thread owns it.

    :meth:`read` returns an RGB ``HxWx3`` uint8 frame, cropped to ``roi`` when one is set, no
    larger than ``max_width`` x ``max_height`` (scaled down, aspect ratio kept), or raises
    :class:`SourceUnavailable` (or :class:`SourceEnded`: a file played once is over).
    """

    type: ClassVar[str] = "?"
    #: A live source produces frames on its own clock (a camera): read it continuously so the
    #: next frame is fresh. A non-live one (file, folder, pattern) produces a frame when asked.
    live: ClassVar[bool] = False

    def __init__(self, config: Any, *, max_width: int, max_height: int) -> None:
        self.config = config
        self.max_width = max_width
        self.max_height = max_height
        self.roi: Roi | None = None
        self._open_ = False

    @property
    def is_open(self) -> bool:
        return self._open_

    def describe(self) -> str:
        """Where frames come from, for logs (no secrets: URLs lose their credentials)."""
        return self.type

    def open(self) -> None:
        if self._open_:
            return
        try:
            self._open()
        except SourceError:
            self._safe_close()
            raise
        except Exception as exc:
            self._safe_close()
            raise SourceUnavailable(f"{self.describe()} could not be opened: {exc}") from exc
        self._open_ = True
        log.debug("opened %s", self.describe(), extra={"event": "camera.source.opened"})

    def read(self) -> np.ndarray:
        if not self._open_:
            raise SourceError(f"{self.describe()} read before open()")
        try:
            frame = self._read()
        except SourceError:
            raise
        except Exception as exc:
            raise SourceUnavailable(f"{self.describe()} read failed: {exc}") from exc
        rgb = as_rgb(frame)
        if self.roi is not None and not self.roi.whole:
            rgb = crop(rgb, self.roi)
        return fit(rgb, self.max_width, self.max_height)

    def close(self) -> None:
        if self._open_:
            self._open_ = False
            self._safe_close()

    def _safe_close(self) -> None:
        try:
            self._close()
        except Exception:
            log.debug("closing %s failed", self.describe(), exc_info=True)

    def __enter__(self) -> FrameSource:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @abstractmethod
    def _open(self) -> None: ...

    @abstractmethod
    def _read(self) -> np.ndarray:
        """The next frame in RGB channel order (HxW, HxWx1, HxWx3 or HxWx4 uint8)."""

    def _close(self) -> None:  # noqa: B027 - an optional hook
        """Release the device or file (optional hook)."""


def as_rgb(frame: np.ndarray) -> np.ndarray:
    """HxW / HxWx1 (grey), HxWx3, HxWx4 (alpha dropped) uint8 -> contiguous HxWx3 uint8."""
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8:
        raise SourceError(f"a source returned {type(frame).__name__} frames, not uint8 arrays")
    if frame.ndim == 3 and frame.shape[2] == 1:
        frame = frame[:, :, 0]
    if frame.ndim == 2:
        frame = np.repeat(frame[:, :, None], 3, axis=2)
    elif frame.ndim == 3 and frame.shape[2] == 4:
        frame = frame[:, :, :3]
    elif frame.ndim != 3 or frame.shape[2] != 3:
        raise SourceError(f"a source returned a frame of shape {frame.shape}")
    if frame.shape[0] < 1 or frame.shape[1] < 1:
        raise SourceError("a source returned an empty frame")
    return np.ascontiguousarray(frame)


def crop(frame: np.ndarray, roi: Roi) -> np.ndarray:
    """The part of ``frame`` inside ``roi`` (fractions of its size; at least one pixel)."""
    h, w = frame.shape[:2]
    left, top = min(w - 1, int(roi.x * w)), min(h - 1, int(roi.y * h))
    right = max(left + 1, min(w, round((roi.x + roi.width) * w)))
    bottom = max(top + 1, min(h, round((roi.y + roi.height) * h)))
    return np.ascontiguousarray(frame[top:bottom, left:right])


def fitted_size(width: int, height: int, max_width: int, max_height: int) -> tuple[int, int]:
    """The largest size within the bounds with the frame's aspect ratio (never scaled up)."""
    scale = min(1.0, max_width / width, max_height / height)
    if scale >= 1.0:
        return width, height
    return max(1, round(width * scale)), max(1, round(height * scale))


def fit(frame: np.ndarray, max_width: int, max_height: int) -> np.ndarray:
    h, w = frame.shape[:2]
    size = fitted_size(w, h, max_width, max_height)
    if size == (w, h):
        return frame
    # PIL's resize filters the whole source area (antialiased), like OpenCV's INTER_AREA.
    return np.asarray(Image.fromarray(frame).resize(size, Image.Resampling.BILINEAR))
