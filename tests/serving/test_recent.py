"""A request retried with the same id runs once and is answered once: attached to the same
request in flight, or answered again from the recent answers; what is never remembered (errors,
other content under the same id, requests without an id); the bounds."""

from __future__ import annotations

import base64
import contextlib
import io
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from ggvision.contract import InferenceRequest, InferenceResult, parse_request
from ggvision.serving import ActiveModel, ImageLoader, RecentIds, Worker
from ggvision.serving.models.backends.fake import FakeBackend
from ggvision.serving.recent import Seen
from tests.classifier.test_worker_swap import fake_active
from tests.reliability.test_fuzz_contract import RecordingBus


def png(value: int) -> str:
    buf = io.BytesIO()
    Image.fromarray(np.full((16, 16, 3), value, np.uint8)).save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


def request(rid: str | None, value: int = 90, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"image": {"data": png(value)}, **extra}
    if rid is not None:
        out["id"] = rid
    return out


class Served:
    def __init__(self, bus: RecordingBus, worker: Worker, active: ActiveModel) -> None:
        self.bus, self.worker, self.active = bus, worker, active

    @property
    def runs(self) -> int:
        backend = self.active.backend
        assert isinstance(backend, FakeBackend)
        return backend.calls

    def wait_published(self, n: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(self.bus.published) < n and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(0.05)  # and nothing more comes
        return [reply for _, reply in self.bus.published]

    def stats(self) -> dict[str, Any]:
        return self.worker.snapshot()[0]


@contextlib.contextmanager
def serve(tmp_path: Path, *, delay_ms: int = 0, **options: Any) -> Iterator[Served]:
    active = fake_active(tmp_path, "fake", delay_ms=delay_ms)
    bus = RecordingBus()
    worker = Worker(
        bus,  # type: ignore[arg-type]
        result_topic="local/result",
        loader=ImageLoader([], max_bytes=1 << 20, max_pixels=1 << 20),
        queue_size=4,
        top_k=3,
        threshold=0.0,
        reply_topic_allowed=lambda topic: topic == "local/result/other",
        active=active,
        **options,
    )
    worker.start()
    try:
        yield Served(bus, worker, active)
    finally:
        worker.stop()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    with serve(tmp_path) as s:
        yield s


@pytest.fixture
def slow(tmp_path: Path) -> Iterator[Served]:
    with serve(tmp_path, delay_ms=300) as s:
        yield s


def test_a_duplicate_of_a_request_in_flight_is_answered_once_and_run_once(slow: Served) -> None:
    slow.worker.on_message("local/inference", request("r1"))
    time.sleep(0.1)  # r1 is in its 300 ms inference
    slow.worker.on_message("local/inference", request("r1"))  # a retry: attached
    slow.worker.on_message("local/inference", request("r1"))
    replies = slow.wait_published(1, timeout=5)
    assert [(r["id"], r["status"]) for r in replies] == [("r1", "ok")]
    assert slow.runs == 1
    stats = slow.stats()
    assert stats["duplicates_in_flight"] == 2 and stats["duplicates_answered"] == 0
    assert stats["received"] == 3 == stats["ok"] + stats["duplicates_in_flight"]


def test_a_duplicate_still_queued_is_attached_too(slow: Served) -> None:
    slow.worker.on_message("local/inference", request("r1", 10))
    slow.worker.on_message("local/inference", request("r2", 20))
    slow.worker.on_message("local/inference", request("r3", 30))  # queued behind r1 and r2
    slow.worker.on_message("local/inference", request("r3", 30))
    replies = slow.wait_published(3, timeout=5)
    assert sorted(r["id"] for r in replies) == ["r1", "r2", "r3"]
    assert slow.runs == 3
    assert slow.stats()["duplicates_in_flight"] == 1


def test_a_duplicate_of_a_recent_answer_gets_the_same_result_without_a_model_run(
    served: Served,
) -> None:
    hooked: list[InferenceResult] = []
    served.worker.on_result = hooked.append
    served.worker.on_message("local/inference", request("r1", top_k=2))
    [first] = served.wait_published(1)
    served.worker.on_message("local/inference", request("r1", top_k=2))
    replies = served.wait_published(2)
    assert len(replies) == 2 and replies[1] == first  # the same result, its timing included
    assert first["status"] == "ok" and len(first["predictions"]) == 2
    assert served.runs == 1
    assert [r.id for r in hooked] == ["r1"], "the uplink is offered the result once"
    stats = served.stats()
    assert stats["ok"] == 1 and stats["duplicates_answered"] == 1
    assert stats["received"] == 2 == stats["ok"] + stats["duplicates_answered"]


def test_the_recent_answer_goes_to_the_duplicates_own_reply_topic_only_when_it_is_the_same(
    served: Served,
) -> None:
    served.worker.on_message("local/inference", request("r1"))
    served.wait_published(1)
    served.worker.on_message("local/inference", request("r1", reply_topic="local/result/other"))
    served.wait_published(2)
    assert [topic for topic, _ in served.bus.published] == ["local/result", "local/result/other"]
    assert served.runs == 2, "another reply topic is another request"


def test_another_request_under_the_same_id_runs_and_gets_its_own_answer(served: Served) -> None:
    served.worker.on_message("local/inference", request("req-1", 10))
    served.wait_published(1)
    served.worker.on_message("local/inference", request("req-1", 200))  # another client's
    first, second = served.wait_published(2)
    assert served.runs == 2
    assert first["predictions"] != second["predictions"]
    assert served.stats()["duplicates_answered"] == 0


def test_error_answers_are_not_remembered_a_retry_runs_again(served: Served) -> None:
    bad_path = {"id": "e1", "image": {"path": "/nowhere/x.jpg"}}  # PATH_NOT_ALLOWED
    served.worker.on_message("local/inference", bad_path)
    served.wait_published(1)
    served.worker.on_message("local/inference", bad_path)
    replies = served.wait_published(2)
    assert [r["error"]["code"] for r in replies] == ["PATH_NOT_ALLOWED"] * 2
    invalid = {"id": "e2", "image": {"data": "!!"}, "top_k": 0}  # INVALID_REQUEST at intake
    served.worker.on_message("local/inference", invalid)
    served.worker.on_message("local/inference", invalid)
    replies = served.wait_published(4)
    assert [r["error"]["code"] for r in replies[2:]] == ["INVALID_REQUEST"] * 2
    stats = served.stats()
    assert stats["duplicates_answered"] == stats["duplicates_in_flight"] == 0
    assert served.worker.intake.recent.remembered() == 0


def test_overloaded_is_not_remembered(tmp_path: Path) -> None:
    with serve(tmp_path, delay_ms=200) as s:
        for i in range(8):  # 1 in inference, 1 prepared, 4 queued: the rest OVERLOADED
            s.worker.on_message("local/inference", request(f"o{i}", i))
        s.wait_published(8, timeout=5)
        overloaded = [
            r["id"] for _, r in s.bus.published if r.get("error", {}).get("code") == "OVERLOADED"
        ]
        assert overloaded
        before = len(s.bus.published)
        s.worker.on_message("local/inference", request(overloaded[0], int(overloaded[0][1:])))
        replies = s.wait_published(before + 1, timeout=5)
        assert replies[-1]["id"] == overloaded[0] and replies[-1]["status"] == "ok"
        assert s.runs == 8 - len(overloaded) + 1, "the retry of an OVERLOADED request ran"


def test_requests_without_an_id_are_never_duplicates(served: Served) -> None:
    served.worker.on_message("local/inference", request(None))
    served.worker.on_message("local/inference", request(None))
    first, second = served.wait_published(2)
    assert first["id"] != second["id"] and served.runs == 2
    assert served.worker.intake.recent.remembered() == 0


def test_remembering_nothing_still_attaches_duplicates_in_flight(tmp_path: Path) -> None:
    with serve(tmp_path, delay_ms=200, recent_ids=0) as s:
        s.worker.on_message("local/inference", request("r1"))
        time.sleep(0.05)
        s.worker.on_message("local/inference", request("r1"))  # in flight: attached
        s.wait_published(1)
        s.worker.on_message("local/inference", request("r1"))  # answered: not remembered
        replies = s.wait_published(2)
        assert [r["id"] for r in replies] == ["r1", "r1"] and s.runs == 2
        assert s.stats()["duplicates_in_flight"] == 1


def test_concurrent_duplicates_run_once(slow: Served) -> None:
    barrier = threading.Barrier(8)

    def send() -> None:
        barrier.wait()
        slow.worker.on_message("local/inference", request("c1"))

    threads = [threading.Thread(target=send) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    replies = slow.wait_published(1, timeout=5)
    assert [r["id"] for r in replies] == ["c1"] and slow.runs == 1
    assert slow.stats()["duplicates_in_flight"] == 7


# --- the bounds ----------------------------------------------------------------------------------
class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def parsed(rid: str, value: int = 90) -> InferenceRequest:
    return parse_request(request(rid, value))


def answered(recent: RecentIds, req: InferenceRequest, n_predictions: int = 1) -> None:
    claim = recent.claim(req, "t")
    assert claim.seen is Seen.NEW and claim.key is not None
    predictions = [{"label": f"l{i}", "index": i, "score": 0.5} for i in range(n_predictions)]
    recent.finish(
        claim.key,
        InferenceResult.model_validate({"id": req.id, "status": "ok", "predictions": predictions}),
    )


def test_at_most_size_answers_are_remembered_the_oldest_go_first() -> None:
    recent = RecentIds(size=3, seconds=60.0)
    reqs = [parsed(f"r{i}", i) for i in range(5)]
    for req in reqs:
        answered(recent, req)
    assert recent.remembered() == 3
    assert [recent.claim(r, "t").seen for r in reqs[2:]] == [Seen.ANSWERED] * 3
    assert recent.claim(reqs[0], "t").seen is Seen.NEW  # forgotten: runs again


def test_answers_are_forgotten_after_seconds() -> None:
    clock = Clock()
    recent = RecentIds(size=10, seconds=60.0, clock=clock)
    answered(recent, parsed("r1"))
    clock.now = 59.0
    assert recent.claim(parsed("r1"), "t").seen is Seen.ANSWERED
    clock.now = 61.0
    assert recent.claim(parsed("r1"), "t").seen is Seen.NEW
    assert recent.remembered() == 0


def test_the_remembered_answers_are_bounded_in_bytes() -> None:
    recent = RecentIds(size=1000, seconds=60.0, max_bytes=20_000)
    for i in range(50):
        answered(recent, parsed(f"r{i}", i), n_predictions=50)  # ~3 KB each
    assert 0 < recent.remembered() < 10
    assert recent.claim(parsed("r49", 49), "t").seen is Seen.ANSWERED


def test_a_smaller_size_applies_at_once() -> None:
    recent = RecentIds(size=10, seconds=60.0)
    for i in range(10):
        answered(recent, parsed(f"r{i}", i))
    recent.configure(size=2, seconds=60.0)
    assert recent.remembered() == 2
