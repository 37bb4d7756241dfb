"""Which images to send, and the request that names each one.

A pass is the sorted list of images in ``imageDirectory`` (by extension, case-insensitive) plus the
explicit ``images``; the :class:`Feed` walks ``repeat`` passes (forever for 0), scanning the folder
again at the start of each so new photos are picked up.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ggvision.contract import (
    MAX_INLINE_IMAGE_BYTES,
    RequestImage,
    inline_image,
    path_image,
    request_json,
    seed_request_json,
)
from ggvision.errors import GgvisionError
from ggvision_requester.config import RequesterConfig

log = logging.getLogger(__name__)

# How long a run that loops forever waits before scanning an empty folder again.
EMPTY_RESCAN_S = 1.0


class ImageListError(GgvisionError):
    """The configured images cannot be listed (missing folder, nothing to send)."""


def scan(cfg: RequesterConfig) -> list[Path]:
    """One pass: the folder's images sorted by name, then the explicit files, as absolute paths."""
    found: list[Path] = []
    if cfg.image_directory:
        folder = Path(cfg.image_directory)
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            raise ImageListError(f"cannot list imageDirectory {folder}: {exc.strerror}") from exc
        extensions = set(cfg.extensions)
        found += [
            Path(os.path.abspath(e.path))
            for e in entries
            if Path(e.name).suffix.lower().lstrip(".") in extensions and e.is_file()
        ]
    found += [Path(os.path.abspath(p)) for p in cfg.images]
    return found


@dataclass(frozen=True, slots=True)
class Item:
    """One image of one pass."""

    path: Path
    pass_no: int


class Feed:
    """The images to send, pass after pass; reads the current configuration at each pass."""

    def __init__(self, config: Callable[[], RequesterConfig]) -> None:
        self._config = config
        self._queue: list[Path] = []
        self._next = 0
        self.passes = 0
        self.not_before = 0.0  # monotonic time before which take() has nothing (empty rescans)

    def check(self) -> int:
        """Scan once up front; ImageListError when there is nothing to send."""
        cfg = self._config()
        images = scan(cfg)
        if not cfg.image_directory and not cfg.images:
            raise ImageListError("no images configured: set imageDirectory or images")
        if not images:
            raise ImageListError(
                f"no images to send: imageDirectory {cfg.image_directory!r} holds no "
                f"*.{{{','.join(cfg.extensions)}}} files"
            )
        return len(images)

    @property
    def exhausted(self) -> bool:
        repeat = self._config().repeat
        return self._next >= len(self._queue) and repeat != 0 and self.passes >= repeat

    def take(self, now: float) -> Item | None:
        """The next image, or None when the run is over or (looping) the folder is empty."""
        if self._next >= len(self._queue):
            if self.exhausted or now < self.not_before:
                return None
            try:
                self._queue = scan(self._config())
            except ImageListError as exc:
                log.error("%s", exc, extra={"event": "requester.scan_failed"})
                self._queue = []
            self._next = 0
            self.passes += 1
            if not self._queue:
                self.not_before = now + EMPTY_RESCAN_S
                return None
        item = Item(self._queue[self._next], self.passes)
        self._next += 1
        return item


# What a PublishToTopic adds around the request: its headers, the topic and the envelope (a
# request to a 256-byte topic stays under it).
PUBLISH_OVERHEAD = 512


def build_request(
    cfg: RequesterConfig, rid: str, path: Path, *, max_message_bytes: int | None = None
) -> tuple[dict[str, Any], str]:
    """The request for ``path`` and how it carries the image ("path", "inline" or "seed").
    ``max_message_bytes``: the Nucleus's largest IPC message (Greengrass nucleus lite's 10,000
    bytes; see :func:`ggvision.bus.message_limit`): an inline request that would not fit in it
    goes by path instead."""
    top_k, source = cfg.top_k or None, cfg.source or None
    if cfg.request_form == "seed":
        request = seed_request_json(rid, str(path.parent), path.name, top_k=top_k, source=source)
        return request, "seed"
    image: RequestImage | None = None
    if cfg.transport == "inline" and _small(path):
        try:
            data = path.read_bytes()
        except OSError:
            data = b""
        if 0 < len(data) <= MAX_INLINE_IMAGE_BYTES and _fits(len(data), max_message_bytes):
            image = inline_image(data)
    # Too big (or unreadable here) for inline: the classifier reads it, and says why not.
    transport = "path" if image is None else "inline"
    image = image or path_image(path)
    return request_json(rid, image, top_k=top_k, source=source), transport


def _fits(image_bytes: int, max_message_bytes: int | None) -> bool:
    """Whether a request with an inline image of ``image_bytes`` fits one IPC message (it goes
    base64 in the request, itself base64 in the PublishToTopic: 16 bytes for every 9)."""
    if max_message_bytes is None:
        return True
    return -(-image_bytes // 9) * 16 + PUBLISH_OVERHEAD <= max_message_bytes


def _small(path: Path) -> bool:
    try:
        return path.stat().st_size <= MAX_INLINE_IMAGE_BYTES
    except OSError:
        return False
