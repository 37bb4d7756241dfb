"""The live view's parts with real messages and real pixels: requests and results as the contract
builds them, frames in a real shared-memory ring holding a real photo, the HTTP server on a
loopback port, /metrics through prometheus_client's parser. And the component as a process: a
taken port is a clear start error; ``make run``'s port helper moves on to the next free one."""

from __future__ import annotations

import base64
import io
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ggvision_liveview.config import LiveViewConfig
from ggvision_liveview.metrics import Metrics
from ggvision_liveview.port import first_free
from ggvision_liveview.render import Renderer
from ggvision_liveview.server import LiveServer
from ggvision_liveview.state import LiveState
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from ggvision.contract import (
    ErrorCode,
    ErrorInfo,
    InferenceResult,
    Prediction,
    Timing,
    frame_image,
    request_json,
    result_json,
)
from ggvision.errors import ConfigError
from ggvision.frames import FrameWriter
from ggvision.testing.harness import CoreThread
from tests.camera.conftest import photo
from tests.liveview.conftest import LiveViewProcess, first_event, http_get

TOKEN = "s3cret-token-0123456789"
SECRET_PATH = "/srv/private/cameras/door.mp4"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def ring(tmp_path: Path) -> Iterator[FrameWriter]:
    writer = FrameWriter("ggv-test-ring", slots=8, slot_bytes=640 * 480 * 3, directory=tmp_path)
    yield writer
    writer.unlink()


class Live:
    """State, renderer, metrics and server wired as the component wires them."""

    def __init__(self, directory: Path, *, token: str = "", stale_after_s: float = 30.0) -> None:
        self.clock = Clock()
        self.metrics = Metrics()
        self.state = LiveState(
            stale_after_s=stale_after_s, on_result=self.metrics.observe, clock=self.clock
        )
        self.metrics.watch(self.state)
        self.renderer = Renderer(directory)
        self.server = LiveServer(
            self.state, self.renderer, self.metrics, host="127.0.0.1", port=0, token=token
        )
        self.server.start()
        self.url = f"http://127.0.0.1:{self.server.port}"
        self.n = 0

    def frame(
        self,
        ring: FrameWriter,
        pixels: np.ndarray,
        *,
        camera: str = "door",
        predictions: list[Prediction] | None = None,
        output: dict[str, Any] | None = None,
        error: ErrorCode | None = None,
        total_ms: float = 12.5,
        overwrite: int = 0,
    ) -> str:
        """One camera frame through the bus callbacks: its request, then its answer (after
        ``overwrite`` more frames went into the ring)."""
        self.n += 1
        rid = f"{camera}-{self.n}"
        ref = ring.write(pixels)
        for _ in range(overwrite):
            ring.write(pixels)
        self.state.on_request("local/inference", request_json(rid, frame_image(ref), source=camera))
        result = InferenceResult(
            id=rid,
            status="error" if error else "ok",
            predictions=[] if error else (predictions or []),
            output=output,
            timing_ms=Timing(total=total_ms),
            source=camera,
            error=ErrorInfo(code=error, message=f"{SECRET_PATH} is gone") if error else None,
        )
        self.state.on_result("local/result", json.dumps(result_json(result)).encode())
        self.clock.now += 0.2
        return rid

    def status(self, component: str, **fields: Any) -> dict[str, Any]:
        doc = {
            "type": "status",
            "component": component,
            "state": "RUNNING",
            "ts": int(time.time() * 1000),
            "uptime_s": 5.0,
            "fps": 4.9,
            "latency_ms": {"p50": 11.0, "p95": 19.5},
            "queue_depth": 1,
            "dropped": 3,
            "errors": {"IMAGE_NOT_FOUND": 2},
            "model": {
                "name": "efficientnet-lite0",
                "version": "1.0.0",
                "backend": "tflite",
                "precision": "int8",
            },
            "model_error": f"cannot open {SECRET_PATH}",
            **fields,
        }
        self.state.on_status(f"local/status/{component}", json.dumps(doc).encode())
        return doc

    def close(self) -> None:
        self.server.stop()
        self.renderer.close()


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    lv = Live(tmp_path)
    yield lv
    lv.close()


CAT = [
    Prediction(label="tabby", index=281, score=0.61),
    Prediction(label="tiger cat", index=282, score=0.2),
]


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    reply = http_get(url + "/metrics")
    assert reply.status == 200 and reply.headers["Content-Type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(reply.body.decode())
        for s in family.samples
    }


def jpeg_of(event: dict[str, Any], camera: str) -> Image.Image:
    cam = next(c for c in event["cameras"] if c["camera"] == camera)
    prefix = "data:image/jpeg;base64,"
    assert cam["jpeg"].startswith(prefix)
    return Image.open(io.BytesIO(base64.b64decode(cam["jpeg"][len(prefix) :])))


# --- configuration --------------------------------------------------------------------------------
def test_a_bind_address_off_loopback_needs_a_token() -> None:
    assert LiveViewConfig.from_raw({}).host == "127.0.0.1"
    for host in ("127.0.0.1", "::1", "localhost", "127.0.0.5"):
        LiveViewConfig.from_raw({"host": host})
    for host in ("0.0.0.0", "192.168.1.20", "::"):
        with pytest.raises(ConfigError, match="token"):
            LiveViewConfig.from_raw({"host": host})
        assert LiveViewConfig.from_raw({"host": host, "token": TOKEN}).token == TOKEN
    with pytest.raises(ConfigError, match="16 characters"):
        LiveViewConfig.from_raw({"token": "short"})


# --- frames: encoded only for viewers, once per frame ---------------------------------------------
def test_nothing_is_read_or_encoded_while_nobody_watches(live: Live, ring: FrameWriter) -> None:
    chelsea = photo("chelsea")
    for _ in range(20):
        live.frame(ring, chelsea, predictions=CAT)
    assert live.renderer.encoded == 0
    # A viewer gets the newest frame, annotated, as a JPEG of the camera's size ...
    event = first_event(live.url + "/events")
    image = jpeg_of(event, "door")
    assert image.size == (chelsea.shape[1], chelsea.shape[0])
    assert live.renderer.encoded == 1
    # ... with the answer drawn on it: the label panel darkens the top-left corner.
    corner = np.asarray(image.convert("L"))[:20, :60].mean()
    assert corner < np.asarray(Image.fromarray(chelsea).convert("L"))[:20, :60].mean() - 40
    # A second viewer of the same frame gets the same bytes, not a second encode.
    again = first_event(live.url + "/events")
    assert again["cameras"][0]["frame_id"] == event["cameras"][0]["frame_id"]
    assert live.renderer.encoded == 1
    # State without pixels for scripts; the labels and figures beside the picture.
    state = http_get(live.url + "/api/state").json()
    (cam,) = state["cameras"]
    assert [p["label"] for p in cam["predictions"]] == ["tabby", "tiger cat"]
    assert cam["frame_id"] == "door-20" and cam["latency_ms"] == 12.5 and cam["fps"] > 4


def test_detections_are_drawn_as_boxes(live: Live, ring: FrameWriter) -> None:
    grey = np.full((240, 320, 3), 128, np.uint8)
    box = {"xmin": 0.5, "ymin": 0.5, "xmax": 0.9, "ymax": 0.9}
    output = {
        "task": "detect",
        "detections": [{"label": "person", "index": 0, "score": 0.91, "box": box}],
    }
    live.frame(ring, grey, output=output)
    event = first_event(live.url + "/events")
    (cam,) = event["cameras"]
    assert cam["detections"] == [{"label": "person", "index": 0, "score": 0.91, "box": box}]
    pixels = np.asarray(jpeg_of(event, "door").convert("RGB")).astype(int)
    # The box's left edge (x = 160) is coloured; inside the box the frame is untouched.
    edge = pixels[200, 159:163]
    assert np.abs(edge - 128).max() > 60
    assert np.abs(pixels[190:200, 200:260] - 128).max() < 12


def test_a_stale_frame_keeps_the_last_picture(live: Live, ring: FrameWriter) -> None:
    chelsea = photo("chelsea")
    live.frame(ring, chelsea, predictions=CAT)
    first = first_event(live.url + "/events")
    assert live.renderer.encoded == 1
    # The ring comes round before the answer: the answered frame's slot is overwritten.
    rid = live.frame(ring, chelsea, predictions=CAT, overwrite=8)
    event = first_event(live.url + "/events", want=rid)
    assert (
        "jpeg" not in event["cameras"][0]
        or jpeg_of(event, "door").size == jpeg_of(first, "door").size
    )
    assert live.renderer.encoded == 1


# --- health, readiness, down ----------------------------------------------------------------------
def test_health_readiness_and_down_states(live: Live, ring: FrameWriter) -> None:
    assert http_get(live.url + "/healthz").body == b"ok\n"
    ready = http_get(live.url + "/readyz")
    assert ready.status == 503 and ready.json()["reasons"] == ["no ok result in the last 30 s"]
    live.status(
        "com.custom.CameraSource",
        camera="door",
        state="streaming",
        model=None,
        fps={"captured": 5.0, "sent": 4.9, "dropped": 0.1},
        source=f"video {SECRET_PATH}",
    )
    live.frame(ring, photo("coffee"), predictions=CAT)
    # No classifier status yet, answers flow: ready, and the camera is live.
    assert http_get(live.url + "/readyz").status == 200
    assert http_get(live.url + "/api/state").json()["cameras"][0]["state"] == "up"
    live.status("com.custom.ImageClassifier")
    assert http_get(live.url + "/readyz").status == 200
    # The classifier reports ERRORED (no model): not ready, its panel says error.
    live.status("com.custom.ImageClassifier", state="ERRORED", model=None)
    ready = http_get(live.url + "/readyz")
    assert ready.status == 503 and ready.json()["reasons"] == ["no model component reports RUNNING"]
    panels = {c["component"]: c for c in http_get(live.url + "/api/state").json()["components"]}
    assert panels["com.custom.ImageClassifier"]["state"] == "error"
    # Silence past staleAfterSeconds: both down, the camera's tile too.
    live.clock.now += 31
    state = http_get(live.url + "/api/state").json()
    assert {c["component"]: c["state"] for c in state["components"]} == {
        "com.custom.CameraSource": "down",
        "com.custom.ImageClassifier": "down",
    }
    assert state["cameras"][0]["state"] == "down" and state["cameras"][0]["why"] == "camera down"
    assert http_get(live.url + "/readyz").status == 503


def test_each_camera_of_a_multi_camera_source_has_its_own_state(
    live: Live, ring: FrameWriter
) -> None:
    live.status("com.custom.ImageClassifier")
    live.frame(ring, photo("coffee"), camera="door", predictions=CAT)
    live.frame(ring, photo("coffee"), camera="yard", predictions=CAT)
    sections = {"door": {"state": "streaming"}, "yard": {"state": "reconnecting"}}
    live.status(
        "com.custom.CameraSource",
        camera="door, yard",
        state="degraded",
        model=None,
        cameras=sections,
    )
    tiles = {c["camera"]: c for c in http_get(live.url + "/api/state").json()["cameras"]}
    assert (tiles["door"]["state"], tiles["door"]["why"]) == ("up", "")
    assert (tiles["yard"]["state"], tiles["yard"]["why"]) == ("down", "camera reconnecting")
    panels = {c["component"]: c for c in http_get(live.url + "/api/state").json()["components"]}
    assert panels["com.custom.CameraSource"]["state"] == "error"  # degraded: one is down
    assert http_get(live.url + "/readyz").status == 200  # the classifier still answers


# --- metrics --------------------------------------------------------------------------------------
def test_metrics_carry_the_status_figures_and_the_answers(live: Live, ring: FrameWriter) -> None:
    cam = live.status(
        "com.custom.CameraSource",
        camera="door",
        state="streaming",
        model=None,
        fps={"captured": 5.0, "sent": 4.9, "dropped": 0.1},
        queue_depth=2,
        errors={"OVERLOADED": 4},
    )
    cls = live.status("com.custom.ImageClassifier")
    chelsea = photo("chelsea")
    for _ in range(3):
        live.frame(ring, chelsea, predictions=CAT, total_ms=30.0)
    live.frame(ring, chelsea, error=ErrorCode.IMAGE_NOT_FOUND, total_ms=1.0)
    m = scrape(live.url)

    def at(name: str, **labels: str) -> float:
        return m[(name, tuple(sorted(labels.items())))]

    c = {"camera": "", "component": "com.custom.ImageClassifier"}
    assert at("ggvision_component_up", **c) == 1.0
    assert at("ggvision_component_fps", **c) == cls["fps"]
    assert at("ggvision_component_queue_depth", **c) == cls["queue_depth"]
    assert at("ggvision_component_dropped_total", **c) == cls["dropped"]
    assert at("ggvision_component_errors_total", **c, code="IMAGE_NOT_FOUND") == 2
    assert at("ggvision_component_latency_ms", **c, quantile="0.95") == 19.5
    assert at("ggvision_component_status_timestamp_seconds", **c) == cls["ts"] / 1000
    d = {"camera": "door", "component": "com.custom.CameraSource"}
    assert at("ggvision_component_fps", **d) == cam["fps"]["sent"]
    assert at("ggvision_component_queue_depth", **d) == 2
    assert at("ggvision_component_errors_total", **d, code="OVERLOADED") == 4
    assert m[("ggvision_results_total", (("camera", "door"), ("status", "ok")))] == 3
    assert m[("ggvision_results_total", (("camera", "door"), ("status", "error")))] == 1
    assert (
        m[("ggvision_result_errors_total", (("camera", "door"), ("code", "IMAGE_NOT_FOUND")))] == 1
    )
    assert m[("ggvision_result_latency_seconds_count", (("camera", "door"),))] == 4
    assert m[("ggvision_result_latency_seconds_bucket", (("camera", "door"), ("le", "0.02")))] == 1
    assert m[("ggvision_result_latency_seconds_sum", (("camera", "door"),))] == pytest.approx(0.091)


# --- read-only, token, no paths -------------------------------------------------------------------
def test_read_only_and_no_file_paths(live: Live, ring: FrameWriter) -> None:
    live.status(
        "com.custom.CameraSource",
        camera="door",
        state="streaming",
        model=None,
        source=f"video {SECRET_PATH}",
    )
    live.status("com.custom.ImageClassifier")
    live.frame(ring, photo("chelsea"), predictions=CAT)
    live.frame(ring, photo("chelsea"), error=ErrorCode.PATH_NOT_ALLOWED)
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        reply = http_get(live.url + "/api/state", method=method)
        assert reply.status == 405 and reply.headers["Allow"] == "GET, HEAD"
    assert http_get(live.url + "/nope").status == 404
    assert http_get(live.url + "/../../etc/passwd").status == 404
    page = http_get(live.url + "/")
    assert page.status == 200 and "default-src 'none'" in page.headers["Content-Security-Policy"]
    event = first_event(live.url + "/events")
    bodies = [
        http_get(live.url + p).body.decode()
        for p in ("/", "/live.js", "/style.css", "/api/state", "/metrics", "/readyz")
    ]
    for body in [*bodies, json.dumps(event)]:
        assert SECRET_PATH not in body and "/srv/" not in body and str(ring.path.parent) not in body
    assert "PATH_NOT_ALLOWED" in bodies[3]  # the code is shown, its message (a path) is not


def test_with_a_token_everything_but_the_probes_needs_it(tmp_path: Path, ring: FrameWriter) -> None:
    live = Live(tmp_path, token=TOKEN)
    try:
        live.frame(ring, photo("chelsea"), predictions=CAT)
        for path in ("/", "/api/state", "/metrics", "/events"):
            denied = http_get(live.url + path)
            assert denied.status == 401 and denied.headers["WWW-Authenticate"] == "Bearer", path
            assert http_get(live.url + path + "?token=wrong-token-000000000").status == 401
            assert http_get(live.url + path, {"Authorization": "Bearer nope"}).status == 401
        for path in ("/", "/api/state", "/metrics"):
            assert http_get(live.url + path + f"?token={TOKEN}").status == 200, path
            assert http_get(live.url + path, {"Authorization": f"Bearer {TOKEN}"}).status == 200
        assert "jpeg" in first_event(live.url + f"/events?token={TOKEN}")["cameras"][0]
        assert http_get(live.url + "/healthz").status == 200
        assert http_get(live.url + "/readyz").status == 200
        assert http_get(live.url + "/live.js").status == 200  # the page's own script, no data
    finally:
        live.close()


# --- the component: a taken port ------------------------------------------------------------------
def test_a_taken_port_is_a_clear_start_error(core: CoreThread) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        lv = LiveViewProcess(core, {"port": port})
        try:
            assert lv.proc.wait(30) == 2
            logs = lv.logs()
        finally:
            lv.close()
        failed = [r for r in logs if r["event"] == "liveview.start_failed"]
        assert failed and f"127.0.0.1:{port}" in failed[0]["message"], logs
        assert "in use" in failed[0]["message"]
        # make run's helper takes the next free one instead.
        assert first_free("127.0.0.1", port, 20) not in (None, port)


def test_ipv6_loopback_and_head(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET6) as probe:
        try:
            probe.bind(("::1", 0))
        except OSError:
            pytest.skip("no IPv6 loopback here")
    state = LiveState(stale_after_s=30)
    server = LiveServer(state, Renderer(tmp_path), Metrics(state), host="::1", port=0)
    server.start()
    try:
        assert server.url == f"http://[::1]:{server.port}/"
        assert http_get(server.url + "healthz").body == b"ok\n"
        head = http_get(server.url + "events", method="HEAD")  # headers only, no stream
        assert head.status == 200 and head.body == b""
        assert head.headers["Content-Type"] == "text/event-stream"
    finally:
        server.stop()
