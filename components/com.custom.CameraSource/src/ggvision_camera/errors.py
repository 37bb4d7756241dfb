"""The camera's branch of the ggvision exception tree.

``SourceUnavailable`` is transient (no device yet, a stream or file gone, a failed read): the
capture loop reconnects with back-off. Any other :class:`SourceError` is a problem of
configuration or installation (a missing package): retrying cannot fix it by itself, so the loop
logs it as an error and retries only at the slowest pace. ``SourceEnded``: a file or folder
played once (``loop`` false) is over; the loop reports the camera ``ended`` and looks again with
back-off, playing it once more only when it has changed on disk (a new recording).
"""

from __future__ import annotations

from ggvision.errors import GgvisionError


class CameraError(GgvisionError):
    """Base of the errors CameraSource raises on purpose."""


class SourceError(CameraError):
    """A frame source is misconfigured or cannot work here (e.g. a missing package)."""


class SourceUnavailable(SourceError):
    """The camera, stream or file cannot be opened or read right now; reconnecting may help."""


class SourceEnded(SourceError):
    """A video file or image folder played once (``loop`` false) has no more frames."""


class TransportError(CameraError):
    """A frame cannot be handed to the classifier (too large, a full disk, a closed ring)."""
