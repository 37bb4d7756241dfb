"""Admission is bounded by what the queue protects, not by a count of 8: the bytes of the waiting
images and a deadline per request (Triton's queue policy); a burst of small requests that memory
and latency allow is served, one over a bound gets ``OVERLOADED`` with the bound in its message,
and every request is answered exactly once. The same through the real core and client:
``tests/reliability/test_admission.py``."""

from __future__ import annotations

import base64
import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ggvision.contract import parse_request
from ggvision.frames import FrameWriter, frame_slot_bytes
from ggvision.serving import ImageLoader, Worker
from ggvision.serving.intake import DEADLINE_EXCEEDED
from tests.classifier.test_worker_swap import fake_active
from tests.reliability.test_fuzz_contract import RecordingBus
from tests.serving.test_recent import png


@contextlib.contextmanager
def serve(
    tmp_path: Path, *, delay_ms: int, queue_size: int = 256, **bounds: Any
) -> Iterator[tuple[RecordingBus, Worker]]:
    bus = RecordingBus()
    worker = Worker(
        bus,  # type: ignore[arg-type]
        result_topic="local/result",
        loader=ImageLoader([str(tmp_path)], max_bytes=1 << 20, max_pixels=1 << 20),
        queue_size=queue_size,
        top_k=3,
        threshold=0.0,
        reply_topic_allowed=lambda topic: False,
        active=fake_active(tmp_path, "fake", delay_ms=delay_ms),
        **bounds,
    )
    worker.start()
    try:
        yield bus, worker
    finally:
        worker.stop()


def answers(bus: RecordingBus, n: int, timeout: float = 30.0) -> dict[str, dict[str, Any]]:
    """The answers by id once ``n`` have come (each id must be answered once)."""
    deadline = time.monotonic() + timeout
    while len(bus.published) < n and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.05)  # and nothing more comes
    ids = [reply["id"] for _, reply in bus.published]
    assert len(ids) == len(set(ids)) == n, f"answered: {len(ids)}, distinct {len(set(ids))}"
    return {reply["id"]: reply for _, reply in bus.published}


def code(reply: dict[str, Any]) -> str:
    return "ok" if reply["status"] == "ok" else str(reply["error"]["code"])


def test_forty_small_requests_at_once_are_all_served(tmp_path: Path) -> None:
    # The reported defect: a burst of ~40 small requests got "queue full (8 waiting)".
    with serve(tmp_path, delay_ms=5, max_queue_bytes=64 << 20, max_queue_delay_s=10.0) as (
        bus,
        worker,
    ):
        for i in range(40):
            worker.on_message("local/inference", {"id": f"r{i}", "image": {"data": png(i)}})
        got = answers(bus, 40)
    assert {code(r) for r in got.values()} == {"ok"}


def test_over_the_byte_bound_a_request_is_overloaded_with_the_reason(tmp_path: Path) -> None:
    image = png(7)
    size = len(base64.b64decode(image))
    # Room for two waiting images; the model takes 300 ms, so the burst waits behind it.
    with serve(tmp_path, delay_ms=300, max_queue_bytes=2 * size + size // 2) as (bus, worker):
        for i in range(12):
            worker.on_message("local/inference", {"id": f"r{i}", "image": {"data": image}})
        got = answers(bus, 12)
        assert worker.intake.queued_bytes() == 0
    codes = [code(got[f"r{i}"]) for i in range(12)]
    # At most 3 are past the queue (preparing, prepared, in inference), 2 wait: 7 refused.
    assert codes.count("OVERLOADED") >= 7, codes
    assert codes[0] == "ok"
    refused = [got[f"r{i}"]["error"]["message"] for i in range(12) if codes[i] != "ok"]
    assert all(f"over the bound of {2 * size + size // 2}" in m for m in refused), refused


def test_the_same_burst_without_a_byte_bound_is_served(tmp_path: Path) -> None:
    image = png(7)
    with serve(tmp_path, delay_ms=20, max_queue_bytes=0) as (bus, worker):
        for i in range(12):
            worker.on_message("local/inference", {"id": f"r{i}", "image": {"data": image}})
        got = answers(bus, 12)
    assert {code(r) for r in got.values()} == {"ok"}


def test_a_request_waiting_past_its_deadline_is_overloaded_not_served_stale(
    tmp_path: Path,
) -> None:
    with serve(tmp_path, delay_ms=300, max_queue_delay_s=0.1) as (bus, worker):
        for i in range(8):
            worker.on_message("local/inference", {"id": f"r{i}", "image": {"data": png(i)}})
        got = answers(bus, 8)
        runs = worker.active.backend.calls  # type: ignore[union-attr, attr-defined]
    codes = [code(got[f"r{i}"]) for i in range(8)]
    # r0 runs at once; r1 and r2 are taken (prepared) before it ends; r3.. wait >= 300 ms.
    assert codes[0] == "ok" and codes[3:] == ["OVERLOADED"] * 5, codes
    assert runs == codes.count("ok")  # the expired ones never reached the model
    for i in range(3, 8):
        message = got[f"r{i}"]["error"]["message"]
        assert message.startswith(DEADLINE_EXCEEDED) and "100 ms" in message, message
        assert got[f"r{i}"]["id"] == f"r{i}"


def test_the_count_stays_a_backstop(tmp_path: Path) -> None:
    with serve(tmp_path, delay_ms=300, queue_size=2) as (bus, worker):
        for i in range(8):
            worker.on_message("local/inference", {"id": f"r{i}", "image": {"data": png(i)}})
        got = answers(bus, 8)
    refused = [r["error"]["message"] for r in got.values() if code(r) != "ok"]
    assert len(refused) >= 3 and all("the most it holds" in m for m in refused), refused


def test_a_requests_bytes_are_its_inline_image_its_file_or_its_frame_slot(tmp_path: Path) -> None:
    loader = ImageLoader([str(tmp_path)], max_bytes=1 << 20, max_pixels=1 << 20)
    data = png(3)
    inline = parse_request({"id": "a", "image": {"data": data}})
    assert loader.pending_bytes(inline.image) == len(base64.b64decode(data))
    photo = tmp_path / "p.png"
    photo.write_bytes(base64.b64decode(data))
    by_path = parse_request({"id": "b", "image": {"path": str(photo)}})
    assert loader.pending_bytes(by_path.image) == photo.stat().st_size
    big = tmp_path / "big.bin"
    big.write_bytes(b"\0" * (2 << 20))  # over max_bytes: counted as max_bytes (refused later)
    assert loader.pending_bytes(parse_request({"id": "c", "image": {"path": str(big)}}).image) == (
        1 << 20
    )
    missing = parse_request({"id": "d", "image": {"path": str(tmp_path / "none.png")}})
    assert loader.pending_bytes(missing.image) == 0
    writer = FrameWriter("ggv-adm-test", slots=3, slot_bytes=64 * 48 * 3, directory=tmp_path)
    try:
        ref = writer.write(np.zeros((48, 64, 3), np.uint8))
        frames = ImageLoader(
            [], max_bytes=1 << 20, max_pixels=1 << 20, frame_directory=str(tmp_path)
        )
        frame = parse_request({"id": "e", "image": {"frame": ref.model_dump()}})
        assert frames.pending_bytes(frame.image) == 64 * 48 * 3
        assert frame_slot_bytes(tmp_path, "ggv-adm-test") == 64 * 48 * 3
        assert frame_slot_bytes(tmp_path, "no-such-ring") == 0
    finally:
        writer.unlink()
        writer.close()


def test_frames_keep_drop_oldest_under_the_byte_bound(tmp_path: Path) -> None:
    from ggvision.serving.intake import Intake
    from ggvision.serving.replies import Replies

    bus = RecordingBus()
    intake = Intake(
        Replies(bus, role="t"),  # type: ignore[arg-type]
        result_topic="local/result",
        queue_size=100,
        reply_topic_allowed=lambda topic: False,
        role="t",
        max_bytes=300,  # three images of 100 bytes
        request_bytes=lambda request: 100,
    )
    frame = {"ring": "cam", "slot": 0, "seq": 2}
    intake.on_message("t", {"id": "req", "image": {"data": png(1)}})  # nothing takes them
    for i in range(4):
        intake.on_message("t", {"id": f"f{i}", "image": {"frame": {**frame, "seq": 2 * i}}})
    assert intake.depth() == 3 and intake.queued_bytes() == 300
    # f0 and f1 made room for f2 and f3; the request was kept.
    dropped = {reply["id"]: reply["error"] for _, reply in bus.published}
    assert set(dropped) == {"f0", "f1"}
    assert all(
        e["code"] == "OVERLOADED" and "newer frame" in e["message"] for e in dropped.values()
    )
    kept = [intake.take(), intake.take(), intake.take()]
    assert [i.request.id for i in kept if i is not None] == ["req", "f2", "f3"]
    assert intake.queued_bytes() == 0
    assert intake.replies.stats.dropped_frames == 2
