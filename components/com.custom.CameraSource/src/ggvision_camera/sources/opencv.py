"""Sources read through OpenCV's ``VideoCapture``: V4L2/USB cameras, RTSP/HTTP streams and video
files. OpenCV (``opencv-python-headless``, extra ``[opencv]``) is imported when a source opens.
OpenCV delivers BGR; these sources hand on RGB."""

from __future__ import annotations

import logging
import os
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np

from ggvision_camera.config import StreamSource, V4L2Source, VideoFileSource
from ggvision_camera.errors import SourceEnded, SourceError, SourceUnavailable
from ggvision_camera.sources.base import FrameSource

log = logging.getLogger(__name__)


def import_cv2(source_type: str) -> Any:
    try:
        import cv2
    except ImportError as exc:
        raise SourceError(
            f"source {source_type} needs package opencv-python-headless: install extra [opencv] "
            "(pip install 'ggvision-camera[opencv]')"
        ) from exc
    return cv2


class OpenCVSource(FrameSource):
    """The shared capture code: open a target with an API preference, read, BGR -> RGB."""

    def _target(self, cv2: Any) -> tuple[int | str, int, list[int]]:
        """(what to open, the capture API, open parameters as [prop, value, ...])."""
        raise NotImplementedError

    def _configure(self, cap: Any) -> None:
        """Request settings once the capture is open (optional hook)."""

    def _open(self) -> None:
        cv2 = import_cv2(self.type)
        target, api, params = self._target(cv2)
        cap = cv2.VideoCapture(target, api, params) if params else cv2.VideoCapture(target, api)
        if not cap.isOpened():
            cap.release()
            raise SourceUnavailable(f"OpenCV cannot open {self.describe()}")
        self._cv2 = cv2
        self._cap = cap
        self._configure(cap)

    def _read(self) -> np.ndarray:
        ok, frame = self._cap.read()
        if not ok or frame is None:
            return self._no_frame()
        return self._to_rgb(frame)

    def _no_frame(self) -> np.ndarray:
        raise SourceUnavailable(f"{self.describe()} returned no frame")

    def _to_rgb(self, frame: np.ndarray) -> np.ndarray:
        if frame.ndim == 3 and frame.shape[2] == 3:
            rgb: np.ndarray = self._cv2.cvtColor(frame, self._cv2.COLOR_BGR2RGB)
            return rgb
        if frame.ndim == 3 and frame.shape[2] == 4:
            rgba: np.ndarray = self._cv2.cvtColor(frame, self._cv2.COLOR_BGRA2RGB)
            return rgba
        return frame  # grey: base.as_rgb widens it

    def _close(self) -> None:
        cap = getattr(self, "_cap", None)
        if cap is not None:
            cap.release()
            self._cap = None

    def _settings(self) -> str:
        cap, cv2 = self._cap, self._cv2
        w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        return f"{w}x{h} at {cap.get(cv2.CAP_PROP_FPS):.3g} fps"


class V4L2Camera(OpenCVSource):
    """A V4L2/USB camera: ``device`` is an index (0 = /dev/video0) or a path. ``api: any``
    lets OpenCV choose the backend (the tests open a video file through this class)."""

    type = "v4l2"
    live = True
    config: V4L2Source

    @property
    def device(self) -> int | str:
        device = self.config.device
        if isinstance(device, str) and device.isdigit():
            return int(device)
        return device

    def describe(self) -> str:
        device = self.device
        return f"camera {'/dev/video' + str(device) if isinstance(device, int) else device}"

    def _target(self, cv2: Any) -> tuple[int | str, int, list[int]]:
        device = self.device
        path = f"/dev/video{device}" if isinstance(device, int) else device
        if not os.path.exists(path):
            raise SourceUnavailable(f"no such device: {path}")
        api = cv2.CAP_V4L2 if self.config.api == "v4l2" else cv2.CAP_ANY
        return device, api, []

    def _configure(self, cap: Any) -> None:
        cv2, c = self._cv2, self.config
        if c.fourcc:
            cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*c.fourcc))
        if c.width:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, c.width)
        if c.height:
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, c.height)
        if c.fps:
            cap.set(cv2.CAP_PROP_FPS, c.fps)
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # the newest frame, not one queued seconds ago
        log.info(
            "%s negotiated %s", self.describe(), self._settings(), extra={"event": "camera.v4l2"}
        )


class StreamCamera(OpenCVSource):
    """An RTSP/HTTP stream through FFmpeg, with open and read time-outs."""

    type = "stream"
    live = True
    config: StreamSource

    def describe(self) -> str:
        return f"stream {redact(self.config.url)}"

    def _target(self, cv2: Any) -> tuple[int | str, int, list[int]]:
        c = self.config
        params = [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
            int(c.open_timeout_seconds * 1000),
            cv2.CAP_PROP_READ_TIMEOUT_MSEC,
            int(c.read_timeout_seconds * 1000),
        ]
        return c.url, cv2.CAP_FFMPEG, params


class VideoFile(OpenCVSource):
    """A video file played in a loop. At the end it is opened again, so a file replaced on disk
    is picked up; a file that vanished makes the source unavailable until it is back.

    ``loop`` false: played once, then :class:`SourceEnded`; opening it again raises
    :class:`SourceEnded` too until the file changes (size or modification time)."""

    type = "video"
    config: VideoFileSource
    _ended: tuple[int, int] | None = None  # the (mtime, size) of the file played to its end

    def describe(self) -> str:
        return f"video {self.config.path}"

    def _target(self, cv2: Any) -> tuple[int | str, int, list[int]]:
        path = self.config.path
        if not os.path.isfile(path):
            raise SourceUnavailable(f"no such video file: {path}")
        if self._ended is not None and self._ended == self._stamp():
            raise SourceEnded(f"{self.describe()} ended (loop off) and has not changed since")
        return path, cv2.CAP_ANY, []

    def _stamp(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.config.path)
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size

    def _no_frame(self) -> np.ndarray:
        if not self.config.loop:
            self._ended = self._stamp()
            raise SourceEnded(f"{self.describe()} ended (loop off)")
        # The end of the file: start again from a fresh open.
        self._close()
        self._open()
        ok, frame = self._cap.read()
        if not ok or frame is None:
            raise SourceUnavailable(f"{self.describe()} has no readable frames")
        return self._to_rgb(frame)


def redact(url: str) -> str:
    """``rtsp://user:pass@host/x`` -> ``rtsp://***@host/x``: never log credentials."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"***@{host}"))
