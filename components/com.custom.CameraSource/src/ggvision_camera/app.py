"""Composition root of com.custom.CameraSource: read the config, build the cameras, wire the bus.

Run by the recipe as ``python -m ggvision_camera`` (or the ``ggvision-camera`` script). Each
camera's frames go to ``inferenceTopic`` as requests ``{"id", "image", "source"}`` (``source``:
the camera's name); answers on ``resultTopic`` (one subscription for all the cameras) are
matched by id to the camera that asked; a status report goes to ``statusTopic`` every
``statusIntervalSeconds``, with a section per camera. A deployment's configuration is validated
before it applies and then rebuilds the cameras it changes.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Any

from ggvision.bus import Bus, Subscription
from ggvision.component import command_line, run_component
from ggvision.errors import ConfigError, GgvisionError
from ggvision.stats import percentiles
from ggvision.telemetry import Health, StatusReporter
from ggvision_camera.camera import Camera
from ggvision_camera.capture import DOWN
from ggvision_camera.config import CameraConfig
from ggvision_camera.errors import CameraError
from ggvision_camera.flow import InFlightBudget, dispatch
from ggvision_camera.planes import PlaneBook

log = logging.getLogger("ggvision_camera")


class CameraService:
    """Owns the config, the cameras and the status reports; reacts to deployments."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.cfg = CameraConfig.from_raw(bus.get_configuration())
        self.started_at = time.monotonic()
        self.cameras: dict[str, Camera] = {}  # by name, in configuration order
        self.budget = _budget(self.cfg)  # maxInFlightTotal, shared by the cameras
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._result_sub: Subscription | None = None
        self._subs: list[Subscription] = []
        # What the consumers take beside full frames (their status reports say; kept across
        # camera rebuilds, renewed when the request topics change).
        self.planes = PlaneBook(_request_topics(self.cfg))
        self._plane_subs: list[Subscription] = []
        self._reporter = StatusReporter(
            bus,
            "com.custom.CameraSource",
            self._health,
            interval_s=self.cfg.status_interval_seconds,
            topic=self.cfg.status_topic,
        )

    @property
    def camera(self) -> Camera | None:
        """The first camera (the only one of a single-camera configuration)."""
        return next(iter(self.cameras.values()), None)

    def start(self) -> None:
        """Build and start the cameras; raises CameraError when one cannot be built."""
        # Validation first: how the Nucleus answers it tells whether it is Greengrass nucleus
        # lite, whose message size the camera's transport must fit (ggvision.bus.message_limit).
        self._subs = [self.bus.subscribe_validation(self.validate)]
        built: dict[str, Camera] = {}
        try:
            for cfg in self.cfg.camera_configs():
                built[cfg.camera_name] = Camera(self.bus, cfg, self.budget, self.planes)
        except CameraError:
            for camera in built.values():
                camera.transport.close()
            raise
        self.cameras = built
        self._result_sub = self._subscribe_results(self.cfg)
        self._subscribe_planes(self.cfg)
        for camera in built.values():
            camera.start()
        self._subs.append(self.bus.subscribe_configuration(self.on_configuration_changed))
        self._reporter.start()
        self.bus.update_state("RUNNING")
        for camera in built.values():
            log.info(
                "camera %s started: %s -> %s (%s)",
                camera.cfg.camera_name,
                camera.source.describe(),
                ", ".join(camera.cfg.request_topics()),
                camera.transport.type,
                extra={"event": "camera.started", "camera": camera.cfg.camera_name},
            )

    def stop(self) -> None:
        self._stopping.set()
        self._reporter.stop(final=False)  # no periodic report races the last one
        with self._lock:
            cameras = list(self.cameras.values())
            _stop_all(cameras)
        for sub in [*self._subs, *self._plane_subs, self._result_sub]:
            if sub is not None:
                try:
                    sub.close()
                except Exception:
                    log.debug("closing a subscription failed", exc_info=True)
        if cameras:
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
        cameras = self.cameras  # replaced whole on a deployment, never changed in place
        if cameras:
            dispatch(payload, [c.publisher for c in cameras.values()])

    def publish_status(self, wait_s: float = 0.0) -> dict[str, Any]:
        return self._reporter.report(wait_s=wait_s)

    def _health(self) -> Health:
        """The cameras' status (its own keys win in the status message) and the common
        figures for telemetry: fps sent, in flight as the queue, dropped, errors, latency.
        With one camera the top-level keys are that camera's; with several, their sum (state:
        the common one, else ``degraded`` when one is down); ``cameras`` has each one's."""
        cameras = list(self.cameras.values())
        if not cameras:
            return Health(state="ERRORED", extra={"state": "no camera"})
        each = {c.cfg.camera_name: c.status() for c in cameras}
        if len(cameras) == 1:
            status = dict(next(iter(each.values())))
        else:
            status = combine(list(each.values()), [x for c in cameras for x in c.latencies()])
        status["cameras"] = each
        budget = self.budget
        if budget is not None:
            status["in_flight_total"] = {"used": budget.used, "limit": budget.limit}
        status["uptime_s"] = round(time.monotonic() - self.started_at, 3)
        log.info(
            "%s: %s, %.3g fps sent, %d in flight",
            status["camera"],
            status["state"],
            status["fps"]["sent"],
            status["in_flight"],
            extra={"event": "camera.status", "status": status},
        )
        health = _health_of(status)
        health.extra = status
        health.parts = {name: _health_of(s) for name, s in each.items()}
        if any(s["state"] in DOWN for s in each.values()):
            health.state = "ERRORED"
        return health

    # --- deployments ---------------------------------------------------------------------------
    def validate(self, proposed: dict[str, Any]) -> tuple[bool, str]:
        try:
            CameraConfig.from_raw(proposed)
        except ConfigError as exc:
            return False, str(exc)
        return True, ""

    def on_configuration_changed(self, key_path: list[str]) -> None:
        # Runs on the SDK's thread: rebuild the cameras elsewhere.
        threading.Thread(target=self.reload, name="camera-reload", daemon=True).start()

    def reload(self) -> None:
        """Apply a new configuration: cameras whose own configuration is unchanged go on
        untouched; changed, added and removed ones are rebuilt, started and stopped. A camera
        whose new configuration cannot run keeps its previous one when it had one."""
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
            old = {c.camera_name: c for c in self.cfg.camera_configs()}
            wanted = new.camera_configs()
            keep = {
                c.camera_name: self.cameras[c.camera_name]
                for c in wanted
                if c.camera_name in self.cameras and old.get(c.camera_name) == c
            }
            planes = self._planes_for(new)
            if planes is not self.planes:
                keep = {}  # the request topics changed: every camera takes the new book
            # First: a changed camera may reuse the device and the ring name of its old self.
            _stop_all([cam for name, cam in self.cameras.items() if name not in keep])
            if new.max_in_flight_total != self.cfg.max_in_flight_total:
                self.budget = _budget(new)  # every camera changed with it: none is kept
            cameras: dict[str, Camera] = {}
            for cfg in wanted:
                name = cfg.camera_name
                if name in keep:
                    cameras[name] = keep[name]
                    continue
                for attempt in (cfg, old.get(name)):
                    if attempt is None:
                        continue
                    try:
                        cameras[name] = Camera(self.bus, attempt, self.budget, planes)
                        break
                    except CameraError as exc:
                        log.error(
                            "configuration of camera %s cannot run: %s",
                            name,
                            exc,
                            extra={
                                "event": "camera.reconfigure_failed",
                                "new": attempt is cfg,
                                "camera": name,
                            },
                        )
            if new.result_topic != self.cfg.result_topic and self._result_sub is not None:
                self._result_sub.close()
                self._result_sub = self._subscribe_results(new)
            listen = (new.consumer_status_topics, new.transport)
            if planes is not self.planes or listen != (
                self.cfg.consumer_status_topics,
                self.cfg.transport,
            ):
                self.planes = planes
                self._subscribe_planes(new)
            self.cameras, self.cfg = cameras, new
            self._reporter.interval_s = new.status_interval_seconds
            self._reporter.topic = new.status_topic
            for name, camera in cameras.items():
                if name not in keep:
                    camera.start()
            log.info(
                "configuration applied: %d camera(s), %d rebuilt",
                len(cameras),
                len(cameras) - len(keep),
                extra={"event": "camera.reconfigured"},
            )

    def _planes_for(self, cfg: CameraConfig) -> PlaneBook:
        """The plane book for ``cfg``: the one kept while its request topics stay the same, else
        a new one (filled by the consumers' next reports)."""
        topics = _request_topics(cfg)
        if self.planes.topics == frozenset(topics):
            return self.planes
        return PlaneBook(topics)


def _request_topics(cfg: CameraConfig) -> list[str]:
    """Every camera's request topics (a camera may override ``tasks``)."""
    return list(dict.fromkeys(t for c in cfg.camera_configs() for t in c.request_topics()))


def _budget(cfg: CameraConfig) -> InFlightBudget | None:
    return InFlightBudget(cfg.max_in_flight_total) if cfg.max_in_flight_total else None


def _stop_all(cameras: list[Camera]) -> None:
    """Stop the cameras together: every capture first, then each one's drain and close."""
    for camera in cameras:
        camera.capture.request_stop()
    for camera in cameras:
        camera.stop()


def _health_of(status: dict[str, Any]) -> Health:
    latency = status.get("latency_ms") or {}
    return Health(
        state="ERRORED" if status["state"] in DOWN else "RUNNING",
        fps=float(status["fps"]["sent"]),
        latency_p50_ms=latency.get("p50"),
        latency_p95_ms=latency.get("p95"),
        queue_depth=int(status["in_flight"]),
        dropped=int(status["dropped"]),
        errors=dict(status["errors"]),
    )


# Per-camera figures that add up across cameras.
_SUMMED = (
    "in_flight",
    "max_in_flight",
    "in_flight_peak",
    "captured",
    "skipped",
    "sent",
    "dropped",
    "answered",
    "ok",
    "lost",
    "late",
    "duplicates",
    "reconnects",
)


def combine(statuses: list[dict[str, Any]], latencies_ms: list[float]) -> dict[str, Any]:
    """The top-level figures of several cameras: counts and rates summed, errors merged,
    latency percentiles over all their recent requests, state the common one (else
    ``degraded`` when one is down, ``starting`` when one is not streaming yet)."""
    states = {s["state"] for s in statuses}
    state = states.pop() if len(states) == 1 else "degraded" if states & DOWN else "starting"
    errors: collections.Counter[str] = collections.Counter()
    requests: collections.Counter[str] = collections.Counter()
    for s in statuses:
        errors.update(s["errors"])
        requests.update(s["requests"])
    retries = [s["retry_in_s"] for s in statuses if s.get("retry_in_s") is not None]
    p50, p95 = percentiles(latencies_ms)
    return {
        "camera": ", ".join(s["camera"] for s in statuses),
        "state": state,
        "reason": "; ".join(f"{s['camera']}: {s['reason']}" for s in statuses if s["reason"]),
        "retry_in_s": min(retries) if retries else None,
        "source": f"{len(statuses)} cameras",
        "transport": statuses[0]["transport"],
        "fps": {
            k: round(sum(s["fps"][k] for s in statuses), 2) for k in ("captured", "sent", "dropped")
        },
        **{k: sum(s[k] for s in statuses) for k in _SUMMED},
        "errors": dict(errors),
        "requests": dict(requests),
        "latency_ms": {} if p50 is None else {"p50": p50, "p95": p95},
        "running_s": max(s["running_s"] for s in statuses),
    }


def main(argv: list[str] | None = None) -> int:
    return run_component(
        "camera",
        lambda bus, _args: CameraService(bus),
        argv,
        parser=command_line("ggvision-camera", __doc__),
        logger=log,
    )
