"""The explicit frame-source registry, keyed by the configuration's ``type``.

Each entry is imported only when used, so a device installs only what its camera needs; a missing
package is a clear :class:`SourceError` naming what to install.
"""

from __future__ import annotations

import importlib
from typing import Any

from ggvision_camera.config import Roi
from ggvision_camera.errors import SourceError
from ggvision_camera.sources.base import FrameSource

# type -> (module, class)
REGISTRY: dict[str, tuple[str, str]] = {
    "synthetic": ("ggvision_camera.sources.synthetic", "SyntheticPattern"),
    "v4l2": ("ggvision_camera.sources.opencv", "V4L2Camera"),
    "stream": ("ggvision_camera.sources.opencv", "StreamCamera"),
    "video": ("ggvision_camera.sources.opencv", "VideoFile"),
    "picamera2": ("ggvision_camera.sources.picamera", "PiCamera"),
    "folder": ("ggvision_camera.sources.folder", "ImageFolder"),
}

__all__ = ["REGISTRY", "FrameSource", "create"]


def create(config: Any, *, max_width: int, max_height: int, roi: Roi | None = None) -> FrameSource:
    """The source for a validated source configuration (one of :data:`config.SourceConfig`);
    ``roi``: the part of each frame it hands on (see :class:`config.Roi`)."""
    kind = getattr(config, "type", None)
    try:
        module_name, cls_name = REGISTRY[str(kind)]
    except KeyError as exc:
        raise SourceError(f"unknown source type {kind!r}; known: {', '.join(REGISTRY)}") from exc
    module = importlib.import_module(module_name)
    cls: type[FrameSource] = getattr(module, cls_name)
    source = cls(config, max_width=max_width, max_height=max_height)
    source.roi = roi
    return source
