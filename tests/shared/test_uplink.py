"""The uplink's SQLite outbox and payload: order, restarts, bounds, a full disk, the 128 KB cap."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest

from ggvision.contract import Box, Detection, InferenceResult, ModelInfo, Prediction, Timing
from ggvision.uplink import MAX_PAYLOAD, Outbox, Uplink, UplinkConfig, payload_of, selects


def test_outbox_keeps_order_and_survives_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    box = Outbox(path, max_messages=100, max_bytes=1 << 20)
    for i in range(5):
        assert box.put("t/results", f"m{i}".encode())
    box.close()
    again = Outbox(path, max_messages=100, max_bytes=1 << 20)
    rows = again.oldest(10)
    assert len(again) == 5
    assert [p for _, _, p in rows] == [f"m{i}".encode() for i in range(5)]
    again.delete(rows[0][0])
    assert [p for _, _, p in again.oldest(1)] == [b"m1"]
    assert len(again) == 4


def test_outbox_evicts_the_oldest_beyond_its_bound_and_counts(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite3", max_messages=3, max_bytes=1 << 20)
    for i in range(5):
        box.put("t", f"m{i}".encode())
    assert len(box) == 3
    assert box.evicted == 2
    assert [p for _, _, p in box.oldest(10)] == [b"m2", b"m3", b"m4"]


def test_outbox_byte_bound_is_sqlites_own_full_condition_and_evicts(tmp_path: Path) -> None:
    # max_bytes becomes PRAGMA max_page_count: SQLite itself raises "database or disk is full".
    box = Outbox(tmp_path / "o.sqlite3", max_messages=10_000, max_bytes=64 * 1024)
    blob = b"x" * 3000
    for _ in range(200):
        assert box.put("t", blob)
    assert box.evicted > 0
    assert box.dropped_full == 0
    assert 0 < len(box) < 200
    assert (tmp_path / "o.sqlite3").stat().st_size <= 64 * 1024


def test_a_full_disk_drops_the_message_counted_without_raising(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    box = Outbox(path, max_messages=10_000, max_bytes=64 * 1024)
    # A message larger than the whole database can hold: SQLITE_FULL even when empty.
    assert box.put("t", b"y" * (200 * 1024)) is False
    assert box.dropped_full == 1
    assert len(box) == 0
    assert box.put("t", b"small")  # still usable afterwards
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT count(*) FROM outbox").fetchone()[0] == 1


def _result(n_predictions: int, label: str = "tabby") -> InferenceResult:
    return InferenceResult(
        id="req-1",
        status="ok",
        predictions=[
            Prediction(label=label * 40 if i else label, index=i, score=0.5)
            for i in range(n_predictions)
        ],
        model=ModelInfo(name="m", version="1.0.0", backend="tflite", precision="int8"),
        timing_ms=Timing(total=12.5),
        source="camera",
    )


def test_payload_has_the_documented_fields() -> None:
    obj = json.loads(payload_of(_result(5), "com.custom.ImageClassifier", 3))
    assert set(obj) == {
        "v",
        "result_id",
        "request_id",
        "thing",
        "component",
        "source",
        "status",
        "model",
        "top",
        "ts",
        "latency_ms",
    }
    assert obj["request_id"] == "req-1" and len(obj["result_id"]) == 32
    assert obj["model"] == {"name": "m", "version": "1.0.0", "backend": "tflite"}
    assert [p["label"] for p in obj["top"]] == ["tabby"] + ["tabby" * 40] * 2
    assert obj["latency_ms"] == 12.5


def test_payload_is_trimmed_to_128_kb() -> None:
    data = payload_of(_result(1000), "c", 1000)
    assert len(data) <= MAX_PAYLOAD
    assert 0 < len(json.loads(data)["top"]) < 1000


def test_uplink_config_is_camel_case_with_bounds() -> None:
    cfg = UplinkConfig.model_validate({"enabled": True, "minScore": 0.4, "every": 2})
    assert (cfg.enabled, cfg.min_score, cfg.every) == (True, 0.4, 2)
    with pytest.raises(ValueError, match="every"):
        UplinkConfig.model_validate({"every": 0})


class _DistantBroker:
    """The link to a distant IoT Core: each PUBACK arrives ``rtt`` seconds after its publish.

    (A broker 100 ms away cannot exist on this machine; everything above the link is real.)"""

    def __init__(self, rtt: float) -> None:
        self.rtt = rtt
        self.received: list[bytes] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()

    def publish_iot(self, topic: str, payload: bytes, qos: int = 1) -> Future[None]:
        fut: Future[None] = Future()
        with self._lock:
            self.received.append(payload)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

        def ack() -> None:
            with self._lock:
                self.in_flight -= 1
            fut.set_result(None)

        threading.Timer(self.rtt, ack).start()
        return fut


def test_a_distant_broker_gets_every_result_in_order_with_publishes_pipelined(
    tmp_path: Path,
) -> None:
    broker = _DistantBroker(rtt=0.05)
    cfg = UplinkConfig.model_validate(
        {"enabled": True, "queueSize": 40, "maxInFlight": 8, "outboxPath": str(tmp_path / "o.db")}
    )
    up = Uplink(broker, cfg, component="c")  # type: ignore[arg-type]
    up.start()
    # 300 results at 200/s: one publish per 50 ms round trip (20/s) would overflow the 40-slot
    # memory queue within a second; 8 in flight (160/s) still falls behind, so the backlog has
    # to go through the outbox, in order.
    n = 300
    for i in range(n):
        res = _result(1)
        res.id = f"r{i}"
        up.offer(res)
        time.sleep(0.005)
    deadline = time.monotonic() + 20
    while up.stats.sent < n and time.monotonic() < deadline:
        time.sleep(0.05)
    up.stop()
    ids = [json.loads(p)["request_id"] for p in broker.received]
    assert up.stats.dropped_queue == 0  # the backlog went to the outbox, not to the floor
    assert up.stats.sent == n
    assert ids == [f"r{i}" for i in range(n)]
    assert 1 < broker.max_in_flight <= 8


def _detected(*found: tuple[str, float], status: str = "ok") -> InferenceResult:
    box = Box(xmin=0.1, ymin=0.2, xmax=0.5, ymax=0.9)
    return InferenceResult(
        id="det-1",
        status=status,  # type: ignore[arg-type]
        task="detect",
        detections=[
            Detection(label=lab, index=i, score=s, box=box) for i, (lab, s) in enumerate(found)
        ],
    )


@pytest.mark.parametrize(
    ("filt", "found", "passes"),
    [
        ({"labels": ["person"], "minScore": 0.6}, [("cat", 0.9), ("person", 0.7)], True),
        ({"labels": ["person"], "minScore": 0.6}, [("person", 0.55), ("cat", 0.9)], False),
        ({"labels": ["person"], "minScore": 0.6}, [], False),
        ({"labels": ["person"]}, [("dog", 0.99)], False),
        ({"minScore": 0.8}, [("dog", 0.5), ("cup", 0.81)], True),
        ({"minScore": 0.8}, [("dog", 0.5)], False),
        ({}, [], True),
        ({}, [("dog", 0.1)], True),
    ],
)
def test_filters_judge_a_detection_by_its_boxes(
    filt: dict[str, Any], found: list[tuple[str, float]], passes: bool
) -> None:
    cfg = UplinkConfig.model_validate({"enabled": True, **filt})
    assert selects(cfg, _detected(*found)) is passes


def test_filters_still_judge_a_classification_by_its_top_prediction() -> None:
    cfg = UplinkConfig.model_validate({"labels": ["tabby"], "minScore": 0.4})
    assert selects(cfg, _result(3)) is True  # tabby 0.5
    assert selects(cfg.model_copy(update={"min_score": 0.6}), _result(3)) is False
    assert selects(cfg, _result(3, label="espresso")) is False
    error = _detected(status="error")
    assert selects(cfg, error) is False
    assert selects(cfg.model_copy(update={"include_errors": True}), error) is True


def test_a_detections_payload_carries_its_boxes() -> None:
    obj = json.loads(
        payload_of(_detected(("person", 0.9), ("cat", 0.4)), "com.custom.ObjectDetector", 1)
    )
    assert obj["task"] == "detect" and obj["top"] == []
    assert obj["detections"] == [
        {
            "label": "person",
            "index": 0,
            "score": 0.9,
            "box": {"xmin": 0.1, "ymin": 0.2, "xmax": 0.5, "ymax": 0.9},
        }
    ]
