"""Frame planes: each frame also made at the consumers' model input size, where it is made.

Like Frigate's detect stream: besides the full frame (which annotation and the live view need)
the ring transport writes the frame fitted to each consumer's model input (crop or letterbox,
size, interpolation, colour order) into a plane ring, and the request's frame reference names
both (``docs/messages.md``). The consumer then copies the plane into its input tensor: no
decode, no resize.

The camera learns what to make from the consumers themselves, never from a setting of its own:
every model component's status report says ``frame_plane`` (the request topic it serves and the
:class:`~ggvision.contract.PlaneSpec` its model takes). :class:`PlaneBook` keeps the latest of
each consumer; until a consumer has said, its frames go full-size only, and a consumer whose
model changed uses the full frame until its next report (it checks the spec of every plane).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterable
from typing import Any

from pydantic import ValidationError

from ggvision.contract import MAX_PLANES, PlaneSpec

log = logging.getLogger(__name__)


class PlaneBook:
    """The planes the consumers of some request topics take, learned from their status reports.

    :meth:`on_status` runs on the IPC thread (decodes, never blocks, never raises);
    :meth:`specs` on the capture thread (reads one tuple)."""

    def __init__(self, topics: Iterable[str]) -> None:
        self.topics = frozenset(topics)
        self._lock = threading.Lock()
        self._by_consumer: dict[str, tuple[str, PlaneSpec]] = {}
        self._specs: tuple[PlaneSpec, ...] = ()

    def specs(self) -> tuple[PlaneSpec, ...]:
        """The distinct planes to make of each frame (at most ``MAX_PLANES``), in the order
        the consumers first asked for them."""
        return self._specs

    def on_status(self, topic: str, payload: bytes | dict[str, Any]) -> None:
        """A consumer's status report: learn (or forget) the plane it takes."""
        try:
            report = payload if isinstance(payload, dict) else json.loads(payload)
        except (ValueError, RecursionError):
            return
        if not isinstance(report, dict) or "frame_plane" not in report:
            return  # not a model component's report (or one from before frame planes)
        consumer = f"{topic}|{report.get('component')}"
        plane = report.get("frame_plane")
        learned: tuple[str, PlaneSpec] | None = None
        if isinstance(plane, dict) and plane.get("topic") in self.topics:
            try:
                learned = (str(plane["topic"]), PlaneSpec.model_validate(plane.get("spec")))
            except ValidationError as exc:
                log.warning(
                    "frame plane of %s ignored: %s",
                    consumer,
                    exc.errors()[0].get("msg"),
                    extra={"event": "camera.plane_invalid"},
                )
        self.learn(consumer, learned)

    def learn(self, consumer: str, plane: tuple[str, PlaneSpec] | None) -> None:
        """``consumer`` takes ``plane`` (request topic, spec) from now on; None: full frames."""
        with self._lock:
            if self._by_consumer.get(consumer) == plane:
                return
            if plane is None:
                self._by_consumer.pop(consumer, None)
            else:
                self._by_consumer[consumer] = plane
            specs = tuple(dict.fromkeys(spec for _t, spec in self._by_consumer.values()))
            self._specs = specs[:MAX_PLANES]
        log.info(
            "%s takes %s",
            consumer,
            "full frames" if plane is None else f"a {plane[1].width}x{plane[1].height} plane",
            extra={
                "event": "camera.plane_learned",
                "consumer": consumer,
                "spec": None if plane is None else plane[1].model_dump(),
            },
        )
