"""A Raspberry Pi camera through picamera2 (libcamera). picamera2 is imported when the source
opens: it comes from Raspberry Pi OS's apt packages, not from pip."""

from __future__ import annotations

from typing import Any

import numpy as np

from ggvision_camera.config import PiCameraSource
from ggvision_camera.errors import SourceError, SourceUnavailable
from ggvision_camera.sources.base import FrameSource

NEEDS = "source picamera2 needs picamera2 (Raspberry Pi OS: apt install python3-picamera2)"


def import_picamera2() -> Any:
    try:
        from picamera2 import Picamera2
    except ImportError as exc:
        raise SourceError(NEEDS) from exc
    return Picamera2


class PiCamera(FrameSource):
    type = "picamera2"
    live = True
    config: PiCameraSource

    def describe(self) -> str:
        return f"picamera2 camera {self.config.camera}"

    def _open(self) -> None:
        picamera2 = import_picamera2()
        c = self.config
        try:
            cam = picamera2(camera_num=c.camera)
        except (IndexError, RuntimeError) as exc:  # no such camera, or it is busy
            raise SourceUnavailable(f"{self.describe()} is not available: {exc}") from exc
        self._cam = cam
        controls: dict[str, Any] = {}
        if c.fps:
            period_us = int(1_000_000 / c.fps)
            controls["FrameDurationLimits"] = (period_us, period_us)
        # picamera2's "BGR888" is R, G, B in memory order: RGB arrays, no conversion needed.
        video = cam.create_video_configuration(
            main={"size": (c.width, c.height), "format": "BGR888"}, controls=controls
        )
        cam.configure(video)
        cam.start()

    def _read(self) -> np.ndarray:
        frame: np.ndarray = self._cam.capture_array("main")
        return frame

    def _close(self) -> None:
        cam = getattr(self, "_cam", None)
        if cam is not None:
            self._cam = None
            try:
                cam.stop()
            finally:
                cam.close()
