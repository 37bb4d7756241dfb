"""Loading the image a request names: a path inside the allowed directories, inline base64, or a
shared-memory frame from CameraSource. Every failure is a :class:`RequestError` with its code."""

from __future__ import annotations

import io
import os
import stat
import warnings
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
from ggvision.frames import FrameError, FrameReader, StaleFrame


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
    ) -> None:
        self.allowed = [Path(os.path.realpath(d)) for d in allowed_directories]
        self.max_bytes = max_bytes
        self.max_pixels = max_pixels
        self.frame_directory = Path(frame_directory)
        # JPEG only: decode at a reduced scale (DCT domain) no smaller than this on both sides.
        self.draft_size = draft_size
        self._rings: dict[str, FrameReader] = {}

    def close(self) -> None:
        for ring in self._rings.values():
            ring.close()
        self._rings.clear()

    # --- sources ------------------------------------------------------------------------------
    def load(self, image: PathImage | DataImage | FrameImage) -> Image.Image | np.ndarray:
        if isinstance(image, FrameImage):
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
                if self.draft_size and img.format == "JPEG":
                    img.draft("RGB", (self.draft_size, self.draft_size))
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

    def _frame(self, image: FrameImage) -> np.ndarray:
        ref = image.frame
        ring = self._rings.get(ref.ring)
        try:
            if ring is None:
                ring = FrameReader(ref.ring, directory=self.frame_directory)
                self._rings[ref.ring] = ring
            pixels, _ts = ring.read(ref)
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
