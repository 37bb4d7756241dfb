"""The images of a folder, in name order, in a loop. The folder is listed again on every pass,
so images added or removed are picked up; an undecodable file is skipped and logged once.

``loop`` false: one pass, then :class:`SourceEnded`; opening it again raises :class:`SourceEnded`
too until the folder's listing changes (a file added, removed or rewritten)."""

from __future__ import annotations

import logging
import os
import warnings
from collections import deque
from pathlib import Path

import numpy as np
from PIL import Image

from ggvision_camera.config import ImageFolderSource
from ggvision_camera.errors import SourceEnded, SourceUnavailable
from ggvision_camera.sources.base import FrameSource

log = logging.getLogger(__name__)

# Refuse images that would need more memory than a large camera frame (decompression bombs).
MAX_PIXELS = 50_000_000


class ImageFolder(FrameSource):
    type = "folder"
    config: ImageFolderSource

    def describe(self) -> str:
        return f"folder {self.config.path}"

    _ended: object = None  # the listing played to its end (loop off)

    def _open(self) -> None:
        self._pending: deque[Path] = deque()
        self._skipped: set[str] = set()
        self._list()
        if self._ended is not None and self._ended == self._listing:
            raise SourceEnded(f"{self.describe()} ended (loop off) and has not changed since")

    def _list(self) -> None:
        folder = Path(self.config.path)
        try:
            entries = sorted(
                (e.name, e.stat().st_mtime_ns)
                for e in os.scandir(folder)
                if e.is_file() and not e.name.startswith(".")
            )
        except OSError as exc:
            raise SourceUnavailable(f"cannot list {self.describe()}: {exc.strerror}") from exc
        self._listing = tuple(entries)
        self._pending = deque(folder / n for n, _ in entries)
        if not self._pending:
            raise SourceUnavailable(f"{self.describe()} has no images")

    def _read(self) -> np.ndarray:
        # One pass may skip every remaining file; a second pass over a fresh listing that
        # finds nothing decodable means the folder has no usable image.
        for _ in range(2):
            while self._pending:
                path = self._pending.popleft()
                frame = self._decode(path)
                if frame is not None:
                    return frame
            if not self.config.loop:
                self._ended = self._listing
                raise SourceEnded(f"{self.describe()} ended (loop off)")
            self._list()
        raise SourceUnavailable(f"{self.describe()} has no decodable images")

    def _decode(self, path: Path) -> np.ndarray | None:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(path) as img:
                    if img.width * img.height > MAX_PIXELS:
                        raise ValueError(f"{img.width}x{img.height} is too large")
                    return np.asarray(img.convert("RGB"))
        except FileNotFoundError:
            return None  # removed since the listing
        except Exception as exc:  # PIL raises assorted errors on bad files
            if path.name not in self._skipped:
                self._skipped.add(path.name)
                log.warning(
                    "skipping %s: not a decodable image (%s)",
                    path,
                    exc,
                    extra={"event": "camera.folder.skipped", "file": str(path)},
                )
            return None
