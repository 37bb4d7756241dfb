"""Composition root of com.custom.CameraSource: read the config, build the camera, wire the bus.

Run by the recipe as ``python -m ggvision_camera`` (or the ``ggvision-camera`` script). Frames go
to ``inferenceTopic`` as requests ``{"id", "image", "source"}``; answers on ``resultTopic`` are
matched by id; a status report goes to ``statusTopic`` every ``statusIntervalSeconds``. A
deployment's configuration is validated before it applies and then rebuilds the camera.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from ggvision.bus import Bus, Subscription
from ggvision.component import command_line, run_component
from ggvision.errors import ConfigError, GgvisionError
from ggvision.telemetry import Health, StatusReporter
from ggvision_camera.camera import Camera
from ggvision_camera.config import CameraConfig
from ggvision_camera.errors import CameraError
from ggvision_camera.planes import PlaneBook

log = logging.getLogger("ggvision_camera")


class CameraService:
    """Owns the config, the camera and the status reports; reacts to deployments."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.cfg = CameraConfig.from_raw(bus.get_configuration())
        self.started_at = time.monotonic()
        self.camera: Camera | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._result_sub: Subscription | None = None
        self._subs: list[Subscription] = []
        # What the consumers take beside full frames (their status reports say; kept across
        # camera rebuilds, renewed when the request topics change).
        self.planes = PlaneBook(self.cfg.request_topics())
        self._plane_subs: list[Subscription] = []
        self._reporter = StatusReporter(
            bus,
            "com.custom.CameraSource",
            self._health,
            interval_s=self.cfg.status_interval_seconds,
            topic=self.cfg.status_topic,
        )

    def start(self) -> None:
        """Build and start the camera; raises CameraError when it cannot be built."""
        # Validation first: how the Nucleus answers it tells whether it is Greengrass nucleus
        # lite, whose message size the camera's transport must fit (ggvision.bus.message_limit).
        self._subs = [self.bus.subscribe_validation(self.validate)]
        camera = Camera(self.bus, self.cfg, self.planes)
        self.camera = camera
        self._result_sub = self._subscribe_results(self.cfg)
        self._subscribe_planes(self.cfg)
        camera.start()
        self._subs.append(self.bus.subscribe_configuration(self.on_configuration_changed))
        self._reporter.start()
        self.bus.update_state("RUNNING")
        log.info(
            "camera %s started: %s -> %s (%s)",
            self.cfg.camera_name,
            camera.source.describe(),
            ", ".join(self.cfg.request_topics()),
            camera.transport.type,
            extra={"event": "camera.started"},
        )

    def stop(self) -> None:
        self._stopping.set()
        self._reporter.stop(final=False)  # no periodic report races the last one
        with self._lock:
            camera = self.camera
            if camera is not None:
                camera.stop()
        for sub in [*self._subs, *self._plane_subs, self._result_sub]:
            if sub is not None:
                try:
                    sub.close()
                except Exception:
                    log.debug("closing a subscription failed", exc_info=True)
        if camera is not None:
            self.publish_status(wait_s=2.0)  # the last report, before the connection closes

    # --- results and status --------------------------------------------------------------------
    def _subscribe_results(self, cfg: CameraConfig) -> Subscription:
        # On the IPC thread itself (one hop less per frame) unless each result is printed: a
        # terminal or pipe that blocks must not stall the connection.
        return self.bus.subscribe(cfg.result_topic, self._on_result, inline=not cfg.print_results)

    def _subscribe_planes(self, cfg: CameraConfig) -> None:
        """Listen to the consumers' status reports for the frame planes they take (only the
        transport frame makes planes)."""
        for sub in self._plane_subs:
            sub.close()
        self._plane_subs = []
        if cfg.transport != "frame":
            return
        for topic in dict.fromkeys(cfg.consumer_status_topics):
            self._plane_subs.append(self.bus.subscribe(topic, self.planes.on_status, inline=True))

    def _on_result(self, topic: str, payload: bytes | dict[str, Any]) -> None:
        camera = self.camera
        if camera is not None:
            camera.publisher.on_result(topic, payload)

    def publish_status(self, wait_s: float = 0.0) -> dict[str, Any]:
        return self._reporter.report(wait_s=wait_s)

    def _health(self) -> Health:
        """The camera's status (its own keys win in the status message) and the common
        figures for telemetry: fps sent, in flight as the queue, dropped, errors, latency."""
        camera = self.camera
        if camera is None:
            return Health(state="ERRORED", extra={"state": "no camera"})
        status = {**camera.status(), "uptime_s": round(time.monotonic() - self.started_at, 3)}
        log.info(
            "%s: %s, %.3g fps sent, %d in flight",
            status["camera"],
            status["state"],
            status["fps"]["sent"],
            status["in_flight"],
            extra={"event": "camera.status", "status": status},
        )
        latency = status.get("latency_ms") or {}
        return Health(
            state="ERRORED" if status["state"] == "reconnecting" else "RUNNING",
            fps=float(status["fps"]["sent"]),
            latency_p50_ms=latency.get("p50"),
            latency_p95_ms=latency.get("p95"),
            queue_depth=int(status["in_flight"]),
            dropped=int(status["dropped"]),
            errors=dict(status["errors"]),
            extra=status,
        )

    # --- deployments ---------------------------------------------------------------------------
    def validate(self, proposed: dict[str, Any]) -> tuple[bool, str]:
        try:
            CameraConfig.from_raw(proposed)
        except ConfigError as exc:
            return False, str(exc)
        return True, ""

    def on_configuration_changed(self, key_path: list[str]) -> None:
        # Runs on the SDK's thread: rebuild the camera elsewhere.
        threading.Thread(target=self.reload, name="camera-reload", daemon=True).start()

    def reload(self) -> None:
        with self._lock:
            if self._stopping.is_set():
                return
            try:
                new = CameraConfig.from_raw(self.bus.get_configuration())
            except (ConfigError, GgvisionError) as exc:
                log.error(
                    "new configuration rejected: %s", exc, extra={"event": "camera.config_rejected"}
                )
                return
            if new == self.cfg:
                return
            old = self.camera
            if old is not None:
                old.stop()  # first: the device and the ring name may be the same
            camera = None
            for cfg in (new, self.cfg):
                try:
                    camera = Camera(self.bus, cfg, self._planes_for(cfg))
                    break
                except CameraError as exc:
                    log.error(
                        "configuration cannot run: %s",
                        exc,
                        extra={"event": "camera.reconfigure_failed", "new": cfg is new},
                    )
            if camera is None:
                self.camera = None
                return
            new = camera.cfg
            if new.result_topic != self.cfg.result_topic and self._result_sub is not None:
                self._result_sub.close()
                self._result_sub = self._subscribe_results(new)
            listen = (new.consumer_status_topics, new.transport)
            if camera.planes is not None and (
                camera.planes is not self.planes
                or listen != (self.cfg.consumer_status_topics, self.cfg.transport)
            ):
                self.planes = camera.planes
                self._subscribe_planes(new)
            self.camera, self.cfg = camera, new
            self._reporter.interval_s = new.status_interval_seconds
            self._reporter.topic = new.status_topic
            camera.start()
            log.info("configuration applied", extra={"event": "camera.reconfigured"})

    def _planes_for(self, cfg: CameraConfig) -> PlaneBook:
        """The plane book for ``cfg``: the one kept while its request topics stay the same, else
        a new one (filled by the consumers' next reports)."""
        if self.planes.topics == frozenset(cfg.request_topics()):
            return self.planes
        return PlaneBook(cfg.request_topics())


def main(argv: list[str] | None = None) -> int:
    return run_component(
        "camera",
        lambda bus, _args: CameraService(bus),
        argv,
        parser=command_line("ggvision-camera", __doc__),
        logger=log,
    )
