"""Fair intake (issue 19), in process: a queue per request ``source`` served round-robin,
drop-oldest within the longest lane, the bound on the sources tracked, batches taken in turn,
per-source figures. Nothing here takes a request off the queue but the test (no worker runs),
so the orders asserted are the intake's own. Through the real core, the real client and the
real classifier: ``tests/classifier/test_fair_batched.py``."""

from __future__ import annotations

from typing import Any

import pytest

from ggvision.contract import ErrorCode, InferenceResult, error_result
from ggvision.serving.intake import NO_SOURCE, OTHER, Intake, Item
from ggvision.serving.replies import Replies
from tests.reliability.test_fuzz_contract import RecordingBus
from tests.serving.test_recent import png


def intake(bus: RecordingBus, **bounds: Any) -> Intake:
    return Intake(
        Replies(bus, role="t"),  # type: ignore[arg-type]
        result_topic="local/result",
        reply_topic_allowed=lambda topic: False,
        role="t",
        **{"queue_size": 100, **bounds},
    )


def frame(rid: str, source: str | None, seq: int = 0) -> dict[str, Any]:
    body: dict[str, Any] = {"id": rid, "image": {"frame": {"ring": "cam", "slot": 0, "seq": seq}}}
    if source is not None:
        body["source"] = source
    return body


def request(rid: str, source: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {"id": rid, "image": {"data": png(1)}}
    if source is not None:
        body["source"] = source
    return body


def ids(items: list[Item]) -> list[str]:
    return [i.request.id for i in items]


def drain(q: Intake) -> list[str]:
    out: list[str] = []
    q.stop()
    while (item := q.take()) is not None:
        out.append(item.request.id)
    return out


def test_sources_are_served_in_turn_the_oldest_of_each_first() -> None:
    q = intake(RecordingBus())
    for i in range(6):
        q.on_message("t", request(f"fast-{i}", "fast"))
    q.on_message("t", request("slow-0", "slow"))
    q.on_message("t", request("none-0", None))
    q.on_message("t", request("slow-1", "slow"))
    assert q.depth() == 9
    # fast arrived first, then slow, then the requests without a source: one of each in turn.
    assert drain(q) == [
        "fast-0",
        "slow-0",
        "none-0",
        "fast-1",
        "slow-1",
        "fast-2",
        "fast-3",
        "fast-4",
        "fast-5",
    ]


def test_a_full_queue_drops_the_flooding_cameras_oldest_frames_never_the_slow_ones() -> None:
    bus = RecordingBus()
    q = intake(bus, queue_size=4)
    for i in range(4):
        q.on_message("t", frame(f"fast-{i}", "fast", i))
    # The slow camera's frame makes room by dropping the flooding camera's oldest frame.
    q.on_message("t", frame("slow-0", "slow"))
    # More fast frames: fast holds the most frames, so it drops its own oldest each time.
    for i in range(4, 10):
        q.on_message("t", frame(f"fast-{i}", "fast", i))
    q.on_message("t", frame("slow-1", "slow", 1))
    dropped = [reply["id"] for _, reply in bus.published]
    assert all(rid.startswith("fast-") for rid in dropped), dropped
    assert dropped == [f"fast-{i}" for i in range(8)]
    assert all(
        reply["error"]["code"] == "OVERLOADED" and "newer frame" in reply["error"]["message"]
        for _, reply in bus.published
    )
    assert drain(q) == ["fast-8", "slow-0", "fast-9", "slow-1"]
    figures = q.sources()
    assert figures["fast"]["dropped"] == figures["fast"]["dropped_frames"] == 8
    assert figures["slow"]["dropped"] == 0


def test_requests_are_kept_and_a_request_over_a_full_queue_is_overloaded() -> None:
    bus = RecordingBus()
    q = intake(bus, queue_size=2)
    q.on_message("t", request("a-0", "a"))
    q.on_message("t", request("a-1", "a"))
    q.on_message("t", request("b-0", "b"))
    assert [(r["id"], r["error"]["code"]) for _, r in bus.published] == [("b-0", "OVERLOADED")]
    assert q.sources()["b"]["dropped"] == 1
    assert drain(q) == ["a-0", "a-1"]


def test_sources_past_the_bound_share_the_overflow_lane() -> None:
    q = intake(RecordingBus(), max_sources=2)
    for name in ("cam-a", "cam-b", "spray-1", "spray-2", "spray-3"):
        q.on_message("t", request(f"{name}-0", name))
    q.on_message("t", request("cam-a-1", "cam-a"))
    figures = q.sources()
    assert set(figures) == {"cam-a", "cam-b", OTHER}
    assert figures[OTHER]["queued"] == 3 and figures["cam-a"]["queued"] == 2
    # The overflow lane takes its turn like one source.
    assert drain(q) == ["cam-a-0", "cam-b-0", "spray-1-0", "cam-a-1", "spray-2-0", "spray-3-0"]


def test_spraying_source_names_never_grows_the_lanes_past_the_bound() -> None:
    q = intake(RecordingBus(), max_sources=8, queue_size=10_000)
    for i in range(500):
        q.on_message("t", request(f"r-{i}", f"name-{i}"))
    assert len(q.sources()) == 9  # 8 sources and (other)
    assert q.depth() == 500


def test_take_batch_takes_up_to_the_limit_in_turn() -> None:
    q = intake(RecordingBus())
    for i in range(5):
        q.on_message("t", request(f"a-{i}", "a"))
    for i in range(2):
        q.on_message("t", request(f"b-{i}", "b"))
    assert ids(q.take_batch(4)) == ["a-0", "b-0", "a-1", "b-1"]
    assert ids(q.take_batch(4)) == ["a-2", "a-3", "a-4"]  # only what is waiting (no delay)
    assert q.depth() == 0


def test_take_batch_with_a_delay_returns_once_the_batch_is_full() -> None:
    q = intake(RecordingBus())
    for i in range(3):
        q.on_message("t", request(f"a-{i}", "a"))
    # A full batch is waiting: the (one hour) delay is not waited.
    assert ids(q.take_batch(3, delay_s=3600.0)) == ["a-0", "a-1", "a-2"]


def test_per_source_figures_count_each_answer_once() -> None:
    bus = RecordingBus()
    q = intake(bus)
    for i in range(3):
        q.on_message("t", request(f"cam-{i}", "cam"))
    q.on_message("t", request("anon", None))
    items = q.take_batch(10)
    for item in items:
        if item.request.id == "cam-2":
            result = error_result(item.request.id, ErrorCode.IMAGE_DECODE_FAILED, "bad")
        else:
            result = InferenceResult(id=item.request.id, status="ok", source=item.request.source)
            result.timing_ms.total = 10.0
        q.answer(item, result)
    figures = q.sources()
    assert figures["cam"]["ok"] == 2 and figures["cam"]["errors"] == 1
    assert figures["cam"]["latency_ms"] == {"p50": 10.0, "p95": 10.0}
    assert figures[NO_SOURCE]["ok"] == 1
    assert figures["cam"]["queued"] == 0


@pytest.mark.parametrize("max_delay_s", [0.0, 1e-9])
def test_the_global_bounds_still_hold_across_lanes(max_delay_s: float) -> None:
    bus = RecordingBus()
    q = intake(bus, queue_size=3, max_delay_s=max_delay_s)
    for name in ("a", "b", "c", "d"):
        q.on_message("t", request(f"{name}-0", name))
    codes = [r["error"]["code"] for _, r in bus.published]
    if max_delay_s:
        # each arrival finds the ones before it past their (1 ns) deadline
        assert codes == ["OVERLOADED"] * 3 and q.depth() == 1
    else:
        assert codes == ["OVERLOADED"] and q.depth() == 3


def test_per_source_figures_go_to_telemetry_too() -> None:
    from ggvision.telemetry import Health, telemetry_metrics

    q = intake(RecordingBus())
    q.on_message("t", request("a", "front door"))
    item = q.take_batch(1)[0]
    result = InferenceResult(id="a", status="ok", source="front door")
    result.timing_ms.total = 12.0
    q.answer(item, result)
    health = Health(extra={"sources": q.sources()})
    metrics = {m["N"]: m["V"] for m in telemetry_metrics("com.x.C", health, 1.0, 0)}
    assert metrics["com.x.C.Source.front_door.LatencyP95"] == 12.0
    assert metrics["com.x.C.Source.front_door.Dropped"] == 0
    assert "com.x.C.Source.front_door.Fps" in metrics


def test_an_idle_source_makes_room_for_a_new_one(monkeypatch: pytest.MonkeyPatch) -> None:
    import ggvision.serving.intake as intake_module

    q = intake(RecordingBus(), max_sources=1)
    q.on_message("t", request("a-0", "cam-a"))
    item = q.take_batch(1)[0]
    # cam-a's request is still running: the new source cannot take its place.
    monkeypatch.setattr(intake_module, "SOURCE_IDLE_S", 0.0)
    q.on_message("t", request("b-0", "cam-b"))
    assert set(q.sources()) == {"cam-a", OTHER}
    q.answer(item, InferenceResult(id="a-0", status="ok", source="cam-a"))
    # Answered and idle (the idle time set to 0 here; a minute by default): cam-c takes its place.
    q.on_message("t", request("c-0", "cam-c"))
    assert set(q.sources()) == {"cam-c", OTHER}


def test_a_batch_delay_returns_what_came_once_it_passes() -> None:
    q = intake(RecordingBus())
    q.on_message("t", request("a-0", "a"))
    q.on_message("t", request("b-0", "b"))
    assert ids(q.take_batch(8, delay_s=0.05)) == ["a-0", "b-0"]


def ok(item: Item) -> InferenceResult:
    return InferenceResult(id=item.request.id, status="ok", predictions=[])


def test_the_watermark_counts_only_the_first_admitted_all_answered() -> None:
    """A component update waits for the requests admitted before its notice
    (serving/updates.py): with lanes answered in turn, a later source's answer must not stand
    in for an earlier request still queued."""
    from ggvision.serving.updates import DeferWhileBusy

    q = intake(RecordingBus())
    for i in range(3):
        q.on_message("t", request(f"fast-{i}", "fast"))
    q.on_message("t", request("slow-0", "slow"))
    assert q.watermark() == (4, 0)
    defer = DeferWhileBusy(lambda: q.depth(), progress=q.watermark)
    assert defer("d1", False)[0] > 0  # four admitted before the notice, none answered
    first, second = q.take(), q.take()
    assert first is not None and second is not None
    assert ids([first, second]) == ["fast-0", "slow-0"]
    q.answer(second, ok(second))  # slow-0, the 4th admitted: fast-0..2 still open
    assert q.watermark() == (4, 0)
    q.answer(first, ok(first))
    assert q.watermark() == (4, 1)
    q.on_message("t", request("late-0", "late"))  # after the notice: it never holds the update
    rest = [q.take(), q.take()]
    assert ids([r for r in rest if r is not None]) == ["fast-1", "late-0"]
    for r in rest:
        assert r is not None
        q.answer(r, ok(r))
    assert q.watermark() == (5, 2)
    assert defer("d1", False)[0] > 0  # fast-2 (admitted 3rd) is still queued
    last = q.take()
    assert last is not None and last.request.id == "fast-2"
    q.answer(last, ok(last))
    assert q.watermark() == (5, 5)
    assert defer("d1", False)[0] == 0
