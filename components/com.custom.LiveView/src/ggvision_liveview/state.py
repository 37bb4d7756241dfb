"""What the live view knows: each camera's newest answered frame and each component's newest status.

Fed by the bus callbacks (:meth:`LiveState.on_request`, :meth:`on_result`, :meth:`on_status`):
they only decode, keep a few fields under a short lock and wake the viewers; no pixels are read
here. A camera's frame is known by reference (the request's ``image.frame``, matched to its
answer by ``id``); the pixels are read and encoded by a viewer (:mod:`ggvision_liveview.render`)
only while someone watches.

Only chosen fields of a status leave this module (numbers, codes, model name/version/backend):
a status may hold file paths (a camera's ``source``, a model error) and those are never shown.
"""

from __future__ import annotations

import collections
import json
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from ggvision.contract import FrameRef, RequestError, ResultError, decode_payload, read_result
from ggvision.stats import percentiles

# Requests remembered until their answer comes (a camera has a couple in flight at a time).
PENDING_LIMIT = 512
# Answer times kept per camera for its measured rate.
RATE_WINDOW_S = 5.0
# A status "state" that means the component works (its own words: Health.state or capture state).
UP_STATES = frozenset({"RUNNING", "STREAMING", "STARTING"})
OTHER = "other"  # the camera label past max_cameras (bounded label sets)
_TEXT_MAX = 64


def _sections(value: Any) -> dict[str, dict[str, Any]]:
    """The per-camera sections of a status (``cameras``: name -> figures), names made safe."""
    if not isinstance(value, dict):
        return {}
    out: dict[str, dict[str, Any]] = {}
    for name, section in value.items():
        key = safe_text(name)
        if key is not None and isinstance(section, dict):
            out[key] = section
    return out


def safe_text(value: Any) -> str | None:
    """A short display string; None for anything that could be a path (or is not text)."""
    if not isinstance(value, str) or "/" in value or "\\" in value:
        return None
    return value[:_TEXT_MAX]


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


@dataclass
class CameraView:
    name: str
    frame_id: str = ""
    ref: FrameRef | None = None
    status: str = ""
    predictions: list[dict[str, Any]] = field(default_factory=list)
    detections: list[dict[str, Any]] = field(default_factory=list)
    error_code: str | None = None
    latency_ms: float | None = None
    answered_at: float = 0.0  # monotonic
    times: collections.deque[float] = field(default_factory=lambda: collections.deque(maxlen=256))
    latencies: collections.deque[float] = field(
        default_factory=lambda: collections.deque(maxlen=256)
    )

    def fps(self, now: float) -> float:
        recent = [t for t in self.times if now - t <= RATE_WINDOW_S]
        if len(recent) < 2:
            return 0.0
        span = max(now - recent[0], recent[-1] - recent[0])
        return round((len(recent) - 1) / span, 2) if span > 0 else 0.0


@dataclass
class ComponentView:
    name: str
    status: dict[str, Any]
    received_at: float  # monotonic
    received_ts: float  # epoch seconds


@dataclass(frozen=True)
class ResultEvent:
    """One answer as the metrics count it."""

    camera: str
    status: str
    error_code: str | None
    latency_s: float


def detections_of(result: dict[str, Any]) -> list[dict[str, Any]]:
    """A detector's boxes, ``{"label", "score", "index", "box": {xmin, ymin, xmax, ymax}}``
    normalised to 0..1, from ``output.detections`` (``"task": "detect"``) or ``detections``."""
    output = result.get("output")
    raw = output.get("detections") if isinstance(output, dict) else result.get("detections")
    out = []
    for det in raw if isinstance(raw, list) else []:
        if not isinstance(det, dict) or not isinstance(det.get("box"), dict):
            continue
        box = {k: _number(det["box"].get(k)) for k in ("xmin", "ymin", "xmax", "ymax")}
        score = _number(det.get("score"))
        if score is None or any(v is None for v in box.values()):
            continue
        index = det.get("index")
        out.append(
            {
                "label": str(det.get("label", ""))[:_TEXT_MAX],
                "score": round(score, 4),
                "index": index if isinstance(index, int) else 0,
                "box": box,
            }
        )
    return out


class LiveState:
    """Thread-safe; ``version`` grows with every change and :meth:`wait` sleeps until it does."""

    def __init__(
        self,
        *,
        stale_after_s: float,
        max_cameras: int = 16,
        top_k: int = 5,
        on_result: Callable[[ResultEvent], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stale_after_s = stale_after_s
        self.max_cameras = max_cameras
        self.top_k = top_k
        self.on_result_event = on_result
        self.clock = clock
        self.started_at = clock()
        self._cond = threading.Condition()
        self.version = 0
        self._pending: collections.OrderedDict[str, tuple[str, FrameRef | None]] = (
            collections.OrderedDict()
        )
        self.cameras: dict[str, CameraView] = {}
        self.components: dict[str, ComponentView] = {}
        self.last_ok_at: float | None = None
        self.bad_messages = 0

    # --- bus callbacks (IPC threads: decode, keep, wake; never block) ----------------------------
    def on_request(self, _topic: str, payload: bytes | dict[str, Any]) -> None:
        try:
            obj = decode_payload(payload)
        except RequestError:  # another client's malformed request is not ours to judge
            return
        rid, image = obj.get("id"), obj.get("image")
        frame = image.get("frame") if isinstance(image, dict) else None
        if not isinstance(rid, str) or not isinstance(frame, dict):
            return  # only camera frames are shown (files and inline images are not)
        try:
            ref = FrameRef.model_validate(frame)
        except ValidationError:
            return
        source = obj.get("source")
        camera = safe_text(source) or ref.ring
        with self._cond:
            self._pending[rid] = (camera, ref)
            while len(self._pending) > PENDING_LIMIT:
                self._pending.popitem(last=False)

    def on_result(self, _topic: str, payload: bytes | dict[str, Any]) -> None:
        try:
            result = read_result(payload)
            raw = payload if isinstance(payload, dict) else json.loads(payload)
        except (ResultError, ValueError, RecursionError):
            with self._cond:
                self.bad_messages += 1
            return
        if result is None or not isinstance(raw, dict):
            return
        now = self.clock()
        latency = result.timing_ms.total
        code = result.error.code if result.error is not None else None
        with self._cond:
            camera, ref = self._pending.pop(result.id, (None, None))
            if camera is None:
                camera = safe_text(result.source) or "unknown"
            view = self.cameras.get(camera)
            if view is None:
                if len(self.cameras) >= self.max_cameras:
                    camera, view = OTHER, self.cameras.get(OTHER)
                if view is None:
                    view = self.cameras[camera] = CameraView(camera)
            view.times.append(now)
            view.latencies.append(latency)
            if result.status == "ok":
                self.last_ok_at = now
            if ref is not None:  # a frame: the newest answer is the one to draw
                view.frame_id, view.ref = result.id, ref
                view.status, view.error_code = result.status, code
                view.predictions = [
                    {"label": p.label, "score": round(p.score, 4), "index": p.index}
                    for p in result.predictions[: self.top_k]
                ]
                view.detections = detections_of(raw)
                view.latency_ms = latency
                view.answered_at = now
            self._changed()
        if self.on_result_event is not None:
            self.on_result_event(ResultEvent(camera, result.status, code, latency / 1000))

    def on_status(self, _topic: str, payload: bytes | dict[str, Any]) -> None:
        try:
            obj = decode_payload(payload)
        except RequestError:  # a malformed status is skipped
            with self._cond:
                self.bad_messages += 1
            return
        name = safe_text(obj.get("component"))
        if name is None or obj.get("type", "status") != "status":
            return
        with self._cond:
            if name not in self.components and len(self.components) >= self.max_cameras * 4:
                return
            self.components[name] = ComponentView(name, obj, self.clock(), time.time())
            self._changed()

    def _changed(self) -> None:
        self.version += 1
        self._cond.notify_all()

    def wait(self, seen: int, timeout: float) -> int:
        """Block until ``version`` is past ``seen`` (or ``timeout``); the version now."""
        with self._cond:
            self._cond.wait_for(lambda: self.version != seen, timeout)
            return self.version

    def wake(self) -> None:
        with self._cond:
            self._changed()

    # --- reading ---------------------------------------------------------------------------------
    def component_state(self, view: ComponentView, now: float) -> str:
        """``up``, ``error`` (it reports, but not as working) or ``down`` (no status lately)."""
        if now - view.received_at > self.stale_after_s:
            return "down"
        state = str(view.status.get("state", "")).upper()
        return "up" if state in UP_STATES else "error"

    def panel(self, view: ComponentView, now: float) -> dict[str, Any]:
        """The figures of one component's status that the page and /metrics show."""
        s = view.status
        fps = s.get("fps")
        fps_detail = (
            {k: _number(v) for k, v in fps.items() if k in ("captured", "sent", "dropped")}
            if isinstance(fps, dict)
            else None
        )
        latency = _mapping(s.get("latency_ms"))
        errors = _mapping(s.get("errors"))
        model = s.get("model") if isinstance(s.get("model"), dict) else None
        return {
            "component": view.name,
            "state": self.component_state(view, now),
            "reported_state": safe_text(s.get("state")),
            "age_s": round(now - view.received_at, 1),
            "ts": _number(s.get("ts")),
            "camera": safe_text(s.get("camera")),
            "uptime_s": _number(s.get("uptime_s")),
            "fps": _number(fps) if fps_detail is None else fps_detail.get("sent"),
            "fps_detail": fps_detail,
            "latency_p50_ms": _number(latency.get("p50")),
            "latency_p95_ms": _number(latency.get("p95")),
            "queue_depth": _number(s.get("queue_depth")),
            "dropped": _number(s.get("dropped")),
            "errors": {
                code: n
                for code, n in ((safe_text(k), _number(v)) for k, v in errors.items())
                if code is not None and n is not None
            },
            "model": (
                {k: safe_text(model.get(k)) for k in ("name", "version", "backend", "precision")}
                if model
                else None
            ),
            "received": _number(s.get("received")),
            "ok": _number(s.get("ok")),
        }

    def snapshot(self) -> dict[str, Any]:
        """Every camera and component as the page shows them (no pixels)."""
        now = self.clock()
        with self._cond:
            components = [self.panel(v, now) for _, v in sorted(self.components.items())]
            sources = [v for _, v in sorted(self.components.items())]
            cameras: list[dict[str, Any]] = []
            for name, view in sorted(self.cameras.items()):
                p50, p95 = percentiles(list(view.latencies))
                cameras.append(
                    {
                        "camera": name,
                        "frame_id": view.frame_id,
                        "status": view.status,
                        "error_code": view.error_code,
                        "predictions": list(view.predictions),
                        "detections": list(view.detections),
                        "fps": view.fps(now),
                        "latency_ms": view.latency_ms,
                        "latency_p50_ms": p50,
                        "latency_p95_ms": p95,
                        "age_s": round(now - view.answered_at, 1) if view.answered_at else None,
                    }
                )
        by_camera = {c["camera"]: c for c in components if c["camera"]}
        # A CameraSource of several cameras: each one's own state, from its status sections.
        for source in sources:
            if self.component_state(source, now) == "down":
                continue  # its panel's own state (down) covers it
            for name, section in _sections(source.status.get("cameras")).items():
                if name not in by_camera:
                    reported = str(section.get("state", "")).upper()
                    up = reported in UP_STATES
                    by_camera[name] = {"state": "up" if up else reported.lower() or "error"}
        # The components that answer (not cameras): down when every one of them is.
        answering = [c for c in components if not c["camera"]]
        producers_down = bool(answering) and all(c["state"] != "up" for c in answering)
        for cam in cameras:
            own = by_camera.get(cam["camera"])
            stale = cam["age_s"] is None or cam["age_s"] > self.stale_after_s
            if own is not None and own["state"] != "up":
                cam["state"] = "down"
                cam["why"] = f"camera {own['state']}"
            elif stale or producers_down:
                cam["state"] = "down"
                cam["why"] = "no answers" if not producers_down else "classifier down"
            else:
                cam["state"] = "up"
                cam["why"] = ""
        return {"cameras": cameras, "components": components}

    def frame_of(self, camera: str) -> CameraView | None:
        """A copy of the camera's newest answered frame (reference and answer)."""
        with self._cond:
            view = self.cameras.get(camera)
            if view is None or view.ref is None:
                return None
            copy = CameraView(
                view.name,
                view.frame_id,
                view.ref,
                view.status,
                list(view.predictions),
                list(view.detections),
                view.error_code,
                view.latency_ms,
                view.answered_at,
            )
            copy.times.extend(view.times)
            return copy

    def readiness(self) -> tuple[bool, list[str]]:
        """Ready when an ``ok`` answer came lately and, of the answering components whose
        status is known (not cameras), one reports working with a model."""
        now = self.clock()
        reasons = []
        with self._cond:
            answering = [v for v in self.components.values() if not v.status.get("camera")]
            serving = [
                v
                for v in answering
                if isinstance(v.status.get("model"), dict) and self.component_state(v, now) == "up"
            ]
            last_ok = self.last_ok_at
        if answering and not serving:
            reasons.append("no model component reports RUNNING")
        if last_ok is None or now - last_ok > self.stale_after_s:
            reasons.append(f"no ok result in the last {self.stale_after_s:g} s")
        return not reasons, reasons
