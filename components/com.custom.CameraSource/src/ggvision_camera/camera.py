"""One configured camera, assembled: source -> capture loop -> flow control -> transport -> bus,
and the status it reports. ``cfg`` is the camera's own flat configuration
(:meth:`CameraConfig.camera_configs`); a process with several cameras has one :class:`Camera`
each, every one with its own capture thread, ring (or files) and flow limit."""

from __future__ import annotations

import logging
import time
from typing import Any

from ggvision.bus import Bus, message_limit
from ggvision_camera import sources, transport
from ggvision_camera.capture import Backoff, Capture
from ggvision_camera.config import CameraConfig
from ggvision_camera.errors import TransportError
from ggvision_camera.flow import FramePublisher, InFlightBudget
from ggvision_camera.planes import PlaneBook

log = logging.getLogger(__name__)


class Camera:
    def __init__(
        self,
        bus: Bus,
        cfg: CameraConfig,
        budget: InFlightBudget | None = None,
        planes: PlaneBook | None = None,
    ) -> None:
        """Build every part; raises SourceError / TransportError when one cannot be built.
        ``budget``: the in-flight slots shared with the process's other cameras; ``planes``:
        what the consumers take besides full frames (learned by the service)."""
        self.cfg = cfg
        self.planes = planes
        limit = message_limit(bus)
        if cfg.transport == "inline" and limit is not None:
            raise TransportError(
                "transport inline cannot run here: it publishes each frame as a JPEG inside the "
                f"request (tens of KB), and this Nucleus (Greengrass nucleus lite) takes IPC "
                f"messages of at most {limit} bytes and closes the connection on a bigger one; "
                "use transport frame (shared memory) or file"
            )
        self.source = sources.create(
            cfg.source, max_width=cfg.max_width, max_height=cfg.max_height, roi=cfg.roi
        )
        self.transport = transport.create(cfg, planes.specs if planes is not None else None)
        self.publisher = FramePublisher(
            bus,
            self.transport,
            camera=cfg.camera_name,
            topic=cfg.request_topics(),
            max_in_flight=cfg.max_in_flight,
            timeout_s=cfg.result_timeout_seconds,
            print_results=cfg.print_results,
            budget=budget,
        )
        self.capture = Capture(
            self.source,
            self.publisher,
            fps=cfg.fps,
            backoff=Backoff(cfg.reconnect_initial_seconds, cfg.reconnect_max_seconds),
            name=cfg.camera_name,
        )
        self.started_at = time.monotonic()
        self._mark = (self.started_at, 0, 0, 0)  # time, captured, sent, dropped at the last status

    def start(self) -> None:
        self.capture.start()

    def stop(self, drain_s: float = 2.0) -> None:
        """Stop capturing, give the answers still due a moment, then release the ring/files."""
        self.capture.stop()
        self.publisher.release()
        missing = self.publisher.drain(min(drain_s, self.cfg.result_timeout_seconds))
        if missing:
            self.publisher.expire(everything=True)  # counted as unanswered: the last report adds up
            log.info(
                "stopping with %d request(s) unanswered",
                missing,
                extra={"event": "camera.stop_unanswered"},
            )
        self.transport.close()

    def latencies(self) -> list[float]:
        """The recent request->result latencies (ms), for a figure over several cameras."""
        return self.publisher.latencies()

    def status(self) -> dict[str, Any]:
        """Counters since start, rates since the previous call."""
        flow = self.publisher.snapshot()
        now = time.monotonic()
        captured, sent, dropped = self.capture.captured, flow["sent"], flow["dropped"]
        then, c0, s0, d0 = self._mark
        self._mark = (now, captured, sent, dropped)
        span = max(now - then, 1e-9)
        return {
            "camera": self.cfg.camera_name,
            "state": self.capture.state,
            "reason": self.capture.reason,
            "retry_in_s": self.capture.retry_in_s,
            "source": self.source.describe(),
            "transport": self.transport.type,
            "planes": [] if self.planes is None else [p.model_dump() for p in self.planes.specs()],
            "fps": {
                "captured": round((captured - c0) / span, 2),
                "sent": round((sent - s0) / span, 2),
                "dropped": round((dropped - d0) / span, 2),
            },
            "in_flight": flow["in_flight"],
            "max_in_flight": self.cfg.max_in_flight,
            "in_flight_peak": flow["in_flight_peak"],
            "captured": captured,
            "skipped": self.capture.skipped,
            "sent": sent,
            "dropped": dropped,
            "answered": flow["answered"],
            "ok": flow["ok"],
            "lost": flow["lost"],
            "late": flow["late"],
            "duplicates": flow["duplicates"],
            "errors": flow["errors"],
            "requests": flow["requests"],
            "latency_ms": flow["latency_ms"],
            "reconnects": self.capture.reconnects,
            "running_s": round(now - self.started_at, 3),
        }
