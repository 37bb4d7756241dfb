"""The --watch console: results printed with rate and latency, bounded runs, bad messages."""

from __future__ import annotations

import base64
import io
import json
from typing import Any

from ggvision.core.services.pubsub import PubSub
from ggvision.runner.monitor import ResultMonitor


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _json(obj: dict[str, Any]) -> dict[str, Any]:
    return {"jsonMessage": {"message": obj, "context": {"topic": "t"}}}


def _binary(raw: bytes) -> dict[str, Any]:
    return {"binaryMessage": {"message": base64.b64encode(raw).decode(), "context": {"topic": "t"}}}


def _ok(rid: str, label: str = "tabby", score: float = 0.8) -> dict[str, Any]:
    return {
        "id": rid,
        "status": "ok",
        "predictions": [{"label": label, "index": 281, "score": score}],
    }


def _monitor(**kw: Any) -> tuple[ResultMonitor, PubSub, io.StringIO, Clock]:
    out, clock, pubsub = io.StringIO(), Clock(), PubSub()
    monitor = ResultMonitor(out, clock=clock, **kw)
    monitor.attach(pubsub)
    return monitor, pubsub, out, clock


def test_prints_each_result_with_latency_and_rate() -> None:
    monitor, pubsub, out, clock = _monitor()
    for i in range(5):
        pubsub.publish("cam", "local/inference", _json({"id": f"r{i}", "image": {}}))
        clock.now += 0.010  # 10 ms to answer
        pubsub.publish("clf", "local/result", _json(_ok(f"r{i}")))
        clock.now += 0.090  # 10 results/s in all
    lines = out.getvalue().splitlines()
    assert len(lines) == 5
    assert "tabby 0.80" in lines[-1]
    assert "10.0 ms" in lines[-1]
    assert "10.0 fps" in lines[-1]
    assert len(monitor.latencies_ms) == 5
    assert all(abs(x - 10.0) < 1e-6 for x in monitor.latencies_ms)
    assert monitor.summary().startswith("5 results (0 errors, 10.0 results/s)")
    assert "p50 10.0 ms" in monitor.summary()


def test_binary_results_and_errors_are_counted_by_code() -> None:
    monitor, pubsub, out, _ = _monitor()
    error = {"id": "x", "status": "error", "error": {"code": "OVERLOADED", "message": "full"}}
    pubsub.publish("clf", "local/result", _binary(json.dumps(error).encode()))
    pubsub.publish("clf", "local/result", _json({"id": "y", "status": "ok", "predictions": []}))
    lines = out.getvalue().splitlines()
    assert "ERROR OVERLOADED: full" in lines[0]
    assert "- ms" in lines[0]  # no request seen: no latency, and no guess
    assert "no prediction" in lines[1]
    assert monitor.errors == {"OVERLOADED": 1}
    assert "errors by code: OVERLOADED 1" in monitor.summary()


def test_undecodable_messages_are_ignored_and_delivery_goes_on() -> None:
    monitor, pubsub, out, _ = _monitor()
    pubsub.publish("x", "local/result", _binary(b"\xff\xfe not json"))
    pubsub.publish("x", "local/result", _binary(b"[1, 2]"))
    pubsub.publish("x", "local/inference", _binary(b"{"))
    assert monitor.results == 0 and out.getvalue() == ""
    assert monitor.summary() == "no results"


def test_max_results_sets_done_and_stops_printing() -> None:
    monitor, pubsub, out, _ = _monitor(max_results=3)
    for i in range(5):
        pubsub.publish("clf", "local/result", _json(_ok(f"r{i}")))
        assert monitor.done.is_set() == (i >= 2)
    assert len(out.getvalue().splitlines()) == 3


def test_pending_requests_are_bounded() -> None:
    monitor, pubsub, _, _ = _monitor()
    for i in range(10_000):
        pubsub.publish("cam", "local/inference", _json({"id": f"r{i}"}))
    assert len(monitor._sent) <= 4096
    assert "r9999" in monitor._sent and "r0" not in monitor._sent


def test_a_failing_observer_never_breaks_delivery() -> None:
    pubsub = PubSub()

    def boom(publisher: str, topic: str, event: dict[str, Any]) -> None:
        raise RuntimeError("console bug")

    remove = pubsub.observe("local/#", boom)
    seen: list[str] = []
    pubsub.observe("local/+", lambda p, t, e: seen.append(t))
    pubsub.publish("a", "local/result", _json({}))
    remove()
    remove()  # twice is harmless
    pubsub.publish("a", "local/result", _json({}))
    assert seen == ["local/result", "local/result"]
    assert pubsub.delivered == 0  # observers are not deliveries


def test_a_message_that_is_no_valid_result_is_shown_and_counted_as_malformed() -> None:
    monitor, pubsub, out, _ = _monitor()
    pubsub.publish("clf", "local/result", _json({"id": "x", "status": "maybe"}))
    pubsub.publish("clf", "local/result", _json({"status": "ok"}))
    lines = out.getvalue().splitlines()
    assert "ERROR MALFORMED: not a valid result (" in lines[0]
    assert "'ok' or 'error'" in lines[0]
    assert "ERROR MALFORMED: not a valid result (no string id)" in lines[1]
    assert monitor.errors == {"MALFORMED": 2}


def test_prints_a_detectors_boxes() -> None:
    _, pubsub, out, clock = _monitor(request_topic="local/detect")
    box = {"xmin": 0.1, "ymin": 0.2, "xmax": 0.5, "ymax": 0.9}
    found = {
        "id": "d1",
        "status": "ok",
        "task": "detect",
        "detections": [{"label": "person", "index": 0, "score": 0.91, "box": box}],
    }
    pubsub.publish("cam", "local/detect", _json({"id": "d1", "image": {}}))
    clock.now += 0.020
    pubsub.publish("det", "local/result", _json(found))
    pubsub.publish("det", "local/result", _json({**found, "id": "d2", "detections": []}))
    first, second = out.getvalue().splitlines()
    assert "person 0.91 [0.10 0.20 0.50 0.90]" in first and "20.0 ms" in first
    assert "nothing detected" in second


def test_results_from_several_cameras_name_their_source() -> None:
    _, pubsub, out, _ = _monitor()
    pubsub.publish("clf", "local/result", _json({**_ok("door-1"), "source": "door"}))
    pubsub.publish("clf", "local/result", _json({**_ok("door-2"), "source": "door"}))
    pubsub.publish("clf", "local/result", _json({**_ok("yard-1", "espresso"), "source": "yard"}))
    pubsub.publish("clf", "local/result", _json({**_ok("door-3"), "source": "door"}))
    lines = out.getvalue().splitlines()
    # One camera so far: the lines as they always were; then each names its camera.
    assert "door" not in lines[0] and "door" not in lines[1]
    assert "ms  yard      espresso 0.80" in lines[2]
    assert "ms  door      tabby 0.80" in lines[3]
