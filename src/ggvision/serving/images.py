"""Loading the image a request names: a path inside the allowed directories, inline base64, or a
shared-memory frame from CameraSource. Every failure is a :class:`RequestError` with its code.

Memory: a JPEG over ``max_decode_pixels`` is decoded at 1/2, 1/4 or 1/8 scale in the DCT domain
(``Image.draft``) until it fits, its short side kept >= :data:`MIN_DECODE_SIDE` (far above any
model's crop); other formats decode at full size (``max_pixels`` bounds them). glibc keeps the
freed heap of a large decode, so :meth:`ImageLoader.release` (called once the image is dropped)
gives it back with ``malloc_trim`` after a decode over :data:`TRIM_AFTER_PIXELS`.
"""

from __future__ import annotations

import collections
import ctypes
import ctypes.util
import functools
import io
import logging
import os
import stat
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from ggvision.contract import (
    DataImage,
    ErrorCode,
    FrameImage,
    PathImage,
    RequestError,
    inline_bytes,
)
from ggvision.frames import FrameError, FrameReader, StaleFrame, frame_slot_bytes
from ggvision.serving.preprocess import PlaneEncoder, PlaneTensor

log = logging.getLogger(__name__)

MIN_DECODE_SIDE = 1024  # a reduced decode keeps its short side at least this long
TRIM_AFTER_PIXELS = 4_000_000  # 12 MB of RGB: above it, release() trims the heap
# How a frame request of a model that takes planes was served (ImageLoader.planes).
PLANE_OUTCOMES = ("used", "none", "mismatch", "stale", "unreadable")


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim`` (Linux); None elsewhere (musl, macOS) or when it cannot be found."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim: Callable[[int], int] = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]  # type: ignore[attr-defined]
    trim.restype = ctypes.c_int  # type: ignore[attr-defined]
    return trim


def trim_heap() -> bool:
    """Return the process's free heap to the OS (glibc ``malloc_trim(0)``); False where there is
    no such call."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


def reduced_scale(width: int, height: int, max_pixels: int, min_side: int = MIN_DECODE_SIDE) -> int:
    """The JPEG DCT scale (1, 2, 4 or 8) that brings ``width`` x ``height`` within ``max_pixels``
    (0: no limit), never making the short side shorter than ``min_side``."""
    scale = 1
    while (
        max_pixels
        and scale < 8
        and (width // scale) * (height // scale) > max_pixels
        and min(width, height) // (scale * 2) >= min_side
    ):
        scale *= 2
    return scale


class ImageLoader:
    """Owned by one thread (the preparation stage)."""

    def __init__(
        self,
        allowed_directories: list[str],
        *,
        max_bytes: int,
        max_pixels: int,
        frame_directory: str = "/dev/shm",  # noqa: S108 # POSIX shared memory # nosec B108
        draft_size: int | None = None,
        max_decode_pixels: int = 0,
    ) -> None:
        self.allowed = [Path(os.path.realpath(d)) for d in allowed_directories]
        self.max_bytes = max_bytes
        self.max_pixels = max_pixels
        self.frame_directory = Path(frame_directory)
        # JPEG only: decode at a reduced scale (DCT domain) no smaller than this on both sides.
        self.draft_size = draft_size
        # JPEG: decode at a reduced scale when larger than this (0: never); see the module doc.
        self.max_decode_pixels = max_decode_pixels
        self._rings: dict[str, FrameReader] = {}
        # Frame requests of a model that takes planes: served from the plane ("used") or from
        # the full frame because the request had no plane ("none"), none of the model's spec
        # ("mismatch"), or its plane was overwritten ("stale") or could not be read.
        self.planes: collections.Counter[str] = collections.Counter(
            dict.fromkeys(PLANE_OUTCOMES, 0)
        )
        self._decoded_pixels = 0  # of the last decode not yet released

    def release(self) -> None:
        """Call once the image of the last :meth:`load` is dropped: after a large decode, the
        freed heap goes back to the OS (otherwise the RSS stays at the peak)."""
        pixels, self._decoded_pixels = self._decoded_pixels, 0
        if pixels > TRIM_AFTER_PIXELS and trim_heap():
            log.debug("heap trimmed after a %d-pixel decode", pixels)

    def close(self) -> None:
        for ring in self._rings.values():
            ring.close()
        self._rings.clear()

    def pending_bytes(self, image: PathImage | DataImage | FrameImage) -> int:
        """What ``image`` holds in memory while its request waits, or will once loaded, for the
        intake's byte bound; safe on the IPC callback thread (no decode, no open file kept): an
        inline image's decoded size, a frame's slot size, a file's size (one ``stat``); each at
        most ``max_bytes`` (what is larger is refused on loading anyway); 0 when unknown."""
        if isinstance(image, DataImage):
            data = image.data
            size = len(data) * 3 // 4 - data[-2:].count("=")
        elif isinstance(image, PathImage):
            try:
                size = os.stat(image.path).st_size if "\x00" not in image.path else 0
            except (OSError, ValueError):
                size = 0
        else:
            size = frame_slot_bytes(self.frame_directory, image.frame.ring)
        return max(0, min(size, self.max_bytes))

    # --- sources ------------------------------------------------------------------------------
    def load(
        self, image: PathImage | DataImage | FrameImage, plane: PlaneEncoder | None = None
    ) -> Image.Image | np.ndarray | PlaneTensor:
        """The request's image; ``plane``: what the model takes of a frame plane, used when the
        frame reference carries a plane of that spec (the model's input tensor comes back,
        made from the ring slot in one pass), else the full frame."""
        if isinstance(image, FrameImage):
            if plane is not None:
                made = self._plane(image, plane)
                if made is not None:
                    return made
            return self._frame(image)
        data = self._read_path(image.path) if isinstance(image, PathImage) else inline_bytes(image)
        return self.decode(data)

    def _read_path(self, path: str) -> bytes:
        if "\x00" in path:
            raise RequestError(ErrorCode.INVALID_REQUEST, "image.path contains a NUL byte")
        if not os.path.isabs(path):
            raise RequestError(ErrorCode.PATH_NOT_ALLOWED, "image.path must be absolute")
        real = Path(os.path.realpath(path))
        if not any(real == d or d in real.parents for d in self.allowed):
            raise RequestError(
                ErrorCode.PATH_NOT_ALLOWED, "image.path is outside the allowed directories"
            )
        try:
            fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
        except FileNotFoundError as exc:
            raise RequestError(ErrorCode.IMAGE_NOT_FOUND, "image file not found") from exc
        except OSError as exc:
            raise RequestError(
                ErrorCode.IMAGE_NOT_FOUND, f"image file cannot be opened: {exc.strerror}"
            ) from exc
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise RequestError(ErrorCode.IMAGE_NOT_FOUND, "image.path is not a regular file")
            if st.st_size > self.max_bytes:
                raise RequestError(
                    ErrorCode.IMAGE_TOO_LARGE,
                    f"image file is {st.st_size} bytes; the limit is {self.max_bytes}",
                )
            with os.fdopen(fd, "rb", closefd=False) as f:
                data = f.read(self.max_bytes + 1)
        finally:
            os.close(fd)
        if len(data) > self.max_bytes:
            raise RequestError(ErrorCode.IMAGE_TOO_LARGE, "image file grew past the limit")
        return data

    def decode(self, data: bytes) -> Image.Image:
        if not data:
            raise RequestError(ErrorCode.IMAGE_DECODE_FAILED, "image is empty")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                img = Image.open(io.BytesIO(data))
                w, h = img.size
                if w * h > self.max_pixels:
                    raise RequestError(
                        ErrorCode.IMAGE_TOO_LARGE,
                        f"image is {w}x{h}; the limit is {self.max_pixels} pixels",
                    )
                if img.format == "JPEG":
                    self._draft(img)
                self._decoded_pixels = max(self._decoded_pixels, w * h)
                img.load()
        except RequestError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise RequestError(ErrorCode.IMAGE_TOO_LARGE, f"decompression bomb: {exc}") from exc
        except (OSError, ValueError, SyntaxError, EOFError) as exc:
            raise RequestError(
                ErrorCode.IMAGE_DECODE_FAILED, f"image cannot be decoded: {exc}"
            ) from exc
        except Exception as exc:  # PIL raises assorted errors on hostile files
            raise RequestError(
                ErrorCode.IMAGE_DECODE_FAILED, f"image cannot be decoded: {type(exc).__name__}"
            ) from exc
        return img

    def _draft(self, img: Image.Image) -> None:
        """Let a JPEG decode at reduced scale: as far as ``draft_size`` allows (fast decode,
        which always reduces more than the pixel limit would), else within
        ``max_decode_pixels``."""
        if self.draft_size:
            img.draft("RGB", (self.draft_size, self.draft_size))
            return
        w, h = img.size
        scale = reduced_scale(w, h, self.max_decode_pixels)
        if scale > 1:
            img.draft("RGB", (w // scale, h // scale))

    def _ring(self, name: str) -> FrameReader:
        ring = self._rings.get(name)
        if ring is None:
            ring = FrameReader(name, directory=self.frame_directory)
            self._rings[name] = ring
        return ring

    def _plane(self, image: FrameImage, want: PlaneEncoder) -> PlaneTensor | None:
        """The frame's plane of ``want.spec`` as the model's input; None (counted in
        :attr:`planes` by reason) when the request carries none such, or it cannot be read:
        the full frame serves then."""
        ref = image.frame
        found = ref.plane(want.spec)
        if found is None:
            self.planes["mismatch" if ref.planes else "none"] += 1
            return None
        spec = want.spec
        try:
            h, w, _c = self._ring(ref.ring).shape(ref)
            plane_ring = self._ring(found.ring)
            if plane_ring.shape(found) != (spec.height, spec.width, 3):
                raise FrameError(f"plane {found.ring} is not {spec.width}x{spec.height}x3")
            tensor, _ts = plane_ring.read_with(found, want.encode)
        except StaleFrame:
            self.planes["stale"] += 1
            return None
        except FrameError:
            gone = self._rings.pop(found.ring, None)
            if gone is not None:
                gone.close()
            self.planes["unreadable"] += 1
            return None
        self.planes["used"] += 1
        return PlaneTensor(tensor, (w, h))

    def _frame(self, image: FrameImage) -> np.ndarray:
        ref = image.frame
        try:
            pixels, _ts = self._ring(ref.ring).read(ref)
        except StaleFrame as exc:
            raise RequestError(ErrorCode.IMAGE_NOT_FOUND, f"stale frame: {exc}") from exc
        except FrameError as exc:
            gone = self._rings.pop(ref.ring, None)
            if gone is not None:
                gone.close()  # its mapping and file descriptor
            raise RequestError(ErrorCode.IMAGE_NOT_FOUND, str(exc)) from exc
        if pixels.shape[2] == 1:
            pixels = np.repeat(pixels, 3, axis=2)
        elif pixels.shape[2] == 4:
            pixels = pixels[:, :, :3]
        return pixels
