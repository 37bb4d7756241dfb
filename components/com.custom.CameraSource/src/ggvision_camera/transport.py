"""How a frame's pixels reach the classifier: the ``image`` object of a request.

* ``frame`` (default): a shared-memory ring (:mod:`ggvision.frames`); only the slot reference
  travels on the bus. Fastest, same machine only.
* ``inline``: a base64 JPEG inside the request, re-encoded at lower quality, then smaller, until
  it fits the contract's 128 KB.
* ``file``: a JPEG in a directory the classifier may read (its ``allowedDirectories``); only the
  last ``keep`` files are kept.
"""

from __future__ import annotations

import collections
import io
import logging
import math
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np
from PIL import Image

from ggvision.contract import (
    MAX_INLINE_IMAGE_BYTES,
    MAX_PLANES,
    DataImage,
    FrameImage,
    FramePlane,
    PathImage,
    PlaneSpec,
    RequestImage,
    frame_image,
    inline_image,
    path_image,
)
from ggvision.frames import FrameError, FrameWriter
from ggvision.serving.preprocess import make_plane
from ggvision_camera.config import CameraConfig
from ggvision_camera.errors import TransportError

log = logging.getLogger(__name__)

# Qualities tried, from the configured one down, before the image is made smaller.
_MIN_QUALITY = 40
_QUALITY_STEP = 15


class Transport(ABC):
    type: ClassVar[str] = "?"

    @abstractmethod
    def image(self, frame: np.ndarray) -> RequestImage:
        """The request's ``image`` for an RGB HxWx3 uint8 frame."""

    def close(self) -> None:  # noqa: B027 - an optional hook
        """Release what the transport holds (optional hook)."""


class RingTransport(Transport):
    """Frames in a shared-memory ring; with ``planes`` (what the consumers take, from a
    :class:`~ggvision_camera.planes.PlaneBook`), each frame also fitted to each consumer's
    model input, in one plane ring per spec, named by the same reference."""

    type = "frame"

    def __init__(
        self,
        name: str,
        *,
        slots: int,
        slot_bytes: int,
        directory: Path,
        planes: Callable[[], Sequence[PlaneSpec]] | None = None,
    ) -> None:
        try:
            self.writer = FrameWriter(name, slots=slots, slot_bytes=slot_bytes, directory=directory)
        except (FrameError, OSError) as exc:
            raise TransportError(f"cannot create frame ring {name} in {directory}: {exc}") from exc
        self.name = name
        self.slots = slots
        self.directory = Path(directory)
        self.planes = planes
        self._plane_rings: dict[PlaneSpec, FrameWriter] = {}
        self._made = 0

    def image(self, frame: np.ndarray) -> FrameImage:
        specs = self.planes() if self.planes is not None else ()
        try:
            ref = self.writer.write(frame)
            if specs:
                ref = ref.model_copy(update={"planes": [self._plane(frame, s) for s in specs]})
        except FrameError as exc:
            raise TransportError(str(exc)) from exc
        return frame_image(ref)

    def _plane(self, frame: np.ndarray, spec: PlaneSpec) -> FramePlane:
        """``frame`` made as ``spec`` says, written to the plane ring of that spec."""
        pixels = make_plane(frame, spec)
        writer = self._plane_rings.get(spec)
        if writer is None:
            writer = self._plane_ring(spec)
        ref = writer.write(pixels)
        return FramePlane(ring=ref.ring, slot=ref.slot, seq=ref.seq, spec=spec)

    def _plane_ring(self, spec: PlaneSpec) -> FrameWriter:
        if len(self._plane_rings) >= 2 * MAX_PLANES:  # consumers changed models many times
            for old in self._plane_rings.values():
                old.unlink()
            self._plane_rings.clear()
        self._made += 1  # a new name: a reader never maps a recreated ring of another layout
        name = f"{self.name[:56]}.p{self._made}"
        try:
            writer = FrameWriter(
                name,
                slots=self.slots,
                slot_bytes=spec.width * spec.height * 3,
                directory=self.directory,
            )
        except OSError as exc:
            raise FrameError(f"cannot create plane ring {name}: {exc}") from exc
        self._plane_rings[spec] = writer
        return writer

    def close(self) -> None:
        self.writer.unlink()
        for writer in self._plane_rings.values():
            writer.unlink()
        self._plane_rings.clear()


class InlineJpegTransport(Transport):
    type = "inline"

    def __init__(self, *, quality: int, max_bytes: int = MAX_INLINE_IMAGE_BYTES) -> None:
        self.quality = quality
        self.max_bytes = max_bytes

    def image(self, frame: np.ndarray) -> DataImage:
        return inline_image(jpeg_within(frame, self.max_bytes, self.quality))


class FileTransport(Transport):
    type = "file"

    def __init__(self, directory: Path, *, keep: int, prefix: str, quality: int) -> None:
        self.directory = Path(directory)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise TransportError(f"cannot create {directory}: {exc.strerror}") from exc
        self.keep = keep
        self.prefix = f"{prefix}-{os.getpid()}"
        self.quality = quality
        self._written: collections.deque[Path] = collections.deque()
        self._counter = 0

    def image(self, frame: np.ndarray) -> PathImage:
        self._counter += 1
        path = self.directory / f"{self.prefix}-{self._counter:09d}.jpg"
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            tmp.write_bytes(jpeg(Image.fromarray(frame), self.quality))
            os.replace(tmp, path)  # the classifier never sees a half-written file
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise TransportError(f"cannot write {path}: {exc.strerror}") from exc
        self._written.append(path)
        while len(self._written) > self.keep:
            self._written.popleft().unlink(missing_ok=True)
        return path_image(path.resolve())

    def close(self) -> None:
        while self._written:
            self._written.popleft().unlink(missing_ok=True)


def jpeg(img: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def jpeg_within(frame: np.ndarray, max_bytes: int, quality: int) -> bytes:
    """A JPEG of at most ``max_bytes``: lower quality first, then a smaller image."""
    img = Image.fromarray(frame)
    qualities = sorted(
        {quality, *range(quality - _QUALITY_STEP, _MIN_QUALITY - 1, -_QUALITY_STEP)}, reverse=True
    )
    while True:
        for q in qualities:
            data = jpeg(img, q)
            if len(data) <= max_bytes:
                return data
        if min(img.size) <= 16:
            raise TransportError(f"cannot encode a frame within {max_bytes} bytes")
        # JPEG size is roughly proportional to the pixel count: shrink by the excess, a bit more.
        scale = min(0.9, max(0.25, 0.95 * math.sqrt(max_bytes / len(data))))
        size = (max(16, int(img.width * scale)), max(16, int(img.height * scale)))
        img = img.resize(size, Image.Resampling.BILINEAR)
        qualities = [_MIN_QUALITY] if quality > _MIN_QUALITY else [quality]


def create(cfg: CameraConfig, planes: Callable[[], Sequence[PlaneSpec]] | None = None) -> Transport:
    """The configured transport; ``planes``: the frame planes the consumers take (the ring
    transport makes them; the others send the full frame only)."""
    if cfg.transport == "frame":
        name = cfg.ring_name or f"ggv-{cfg.camera_name}-{os.getpid()}"[:64]
        return RingTransport(
            name,
            slots=cfg.ring_slots,
            slot_bytes=cfg.max_frame_bytes,
            directory=Path(cfg.ring_directory),
            planes=planes,
        )
    if cfg.transport == "inline":
        return InlineJpegTransport(quality=cfg.jpeg_quality)
    return FileTransport(
        Path(cfg.file_directory),
        keep=cfg.file_keep,
        prefix=cfg.camera_name,
        quality=cfg.jpeg_quality,
    )
