"""A camera's newest answered frame as an annotated JPEG, made only when a viewer asks for it.

The pixels are read from the camera's shared-memory ring by reference
(:class:`ggvision.frames.FrameReader`, as the classifier reads them), the answer drawn with
:func:`ggvision.annotate.annotate` (the same drawing as ``ggvision classify --out``) with the
measured rate and latency, and encoded once per frame: every viewer of that frame gets the same
bytes (:class:`Renderer` keeps the last JPEG of each camera). Nobody watching: nothing is read
or encoded.
"""

from __future__ import annotations

import io
import logging
import threading
import time
from pathlib import Path

from ggvision.annotate import annotate
from ggvision.frames import FrameError, FrameReader, StaleFrame
from ggvision_liveview.state import CameraView

log = logging.getLogger(__name__)


def frame_lines(view: CameraView, now: float) -> list[str]:
    """The figures drawn on the frame under the labels, like the Coral demos."""
    lines = [f"{view.fps(now):.1f} fps"]
    if view.latency_ms is not None:
        lines.append(f"{view.latency_ms:.0f} ms")
    if view.status == "error" and view.error_code:
        lines.append(f"error {view.error_code}")
    return lines


class Renderer:
    """Thread-safe: viewers call :meth:`jpeg` from their own threads."""

    def __init__(self, directory: Path, *, quality: int = 80) -> None:
        self.directory = directory
        self.quality = quality
        self._readers: dict[str, FrameReader] = {}
        self._cache: dict[str, tuple[str, bytes]] = {}  # camera -> (frame id, jpeg)
        self._lock = threading.Lock()
        self.encoded = 0  # frames encoded since start (the benchmark reads it)

    def jpeg(self, view: CameraView) -> bytes | None:
        """The annotated JPEG of ``view``'s frame; the last good one when that frame is gone
        (overwritten, or its ring was truncated); None when there never was one."""
        with self._lock:
            cached = self._cache.get(view.name)
            if cached is not None and cached[0] == view.frame_id:
                return cached[1]
            data = self._render(view)
            if data is None:
                return cached[1] if cached is not None else None
            self._cache[view.name] = (view.frame_id, data)
            self.encoded += 1
            return data

    def _render(self, view: CameraView) -> bytes | None:
        from PIL import Image

        ref = view.ref
        if ref is None:
            return None
        try:
            pixels, _ts = self._reader(ref.ring).read(ref)
        except StaleFrame:
            return None
        except FrameError as exc:  # the ring is gone or was truncated (its writer restarted)
            self._drop(ref.ring)
            log.debug("frame unavailable: %s", exc, extra={"event": "liveview.frame_gone"})
            return None
        if pixels.shape[2] == 1:
            image = Image.fromarray(pixels[:, :, 0], "L")
        else:
            image = Image.fromarray(pixels[:, :, :3], "RGB")
        drawn = annotate(
            image,
            predictions=view.predictions,
            detections=view.detections,
            lines=frame_lines(view, time.monotonic()),
        )
        out = io.BytesIO()
        drawn.convert("RGB").save(out, format="JPEG", quality=self.quality)
        return out.getvalue()

    def _reader(self, ring: str) -> FrameReader:
        reader = self._readers.get(ring)
        if reader is None:
            reader = self._readers[ring] = FrameReader(ring, directory=self.directory)
        return reader

    def _drop(self, ring: str) -> None:
        reader = self._readers.pop(ring, None)
        if reader is not None:
            reader.close()

    def close(self) -> None:
        with self._lock:
            for ring in list(self._readers):
                self._drop(ring)
