"""Every frame request the camera sends is counted exactly once: answered ok, answered with an
error, never published, unanswered (timed out, or still in flight at stop) or in flight; late
and duplicate answers are counted beside, never twice. Frames are not retried (perishable)."""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any

import numpy as np
from ggvision_camera.flow import FramePublisher
from ggvision_camera.transport import InlineJpegTransport

from ggvision.contract import ErrorCode, error_result, result_json


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class ScriptedBus:
    """Records the requests; ``fail``: the next publish raises, ``fail_later``: its future
    fails."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.fail = False
        self.fail_later = False

    def publish_json(self, topic: str, obj: dict[str, Any]) -> Future[Any]:
        if self.fail:
            self.fail = False
            raise ConnectionError("the core is gone")
        self.requests.append(obj)
        fut: Future[Any] = Future()
        if self.fail_later:
            self.fail_later = False
            fut.set_exception(ConnectionError("not delivered"))
        else:
            fut.set_result(None)
        return fut


def ok(rid: str) -> dict[str, Any]:
    return {"id": rid, "status": "ok", "predictions": [{"label": "x", "index": 0, "score": 1.0}]}


def adds_up(requests: dict[str, int]) -> bool:
    parts = ("ok", "error", "publish_failed", "unanswered", "in_flight")
    return requests["sent"] == sum(requests[k] for k in parts)


def test_every_request_is_counted_once_and_the_counts_add_up() -> None:
    bus, clock = ScriptedBus(), Clock()
    pub = FramePublisher(
        bus,  # type: ignore[arg-type]
        InlineJpegTransport(quality=80),
        camera="cam",
        topic="local/inference",
        max_in_flight=100,
        timeout_s=1.0,
        clock=clock,
    )
    frame = np.zeros((24, 32, 3), np.uint8)
    for i in range(8):
        if i == 6:
            bus.fail = True
        if i == 7:
            bus.fail_later = True
        pub.offer(frame, i, clock.now)
        clock.now += 0.1  # past any publish back-off
    ids = [r["id"] for r in bus.requests]
    assert len(ids) == 7  # 8 sent, one publish raised
    pub.on_result("local/result", ok(ids[0]))
    pub.on_result("local/result", ok(ids[0]))  # a duplicate: ignored, counted
    pub.on_result("local/result", ok(ids[1]))
    pub.on_result("local/result", result_json(error_result(ids[2], ErrorCode.OVERLOADED, "full")))
    pub.on_result("local/result", {"id": "someone-else-1", "status": "ok"})  # not ours
    mid = pub.snapshot()["requests"]
    assert mid == {
        "sent": 8,
        "ok": 2,
        "error": 1,
        "publish_failed": 2,
        "unanswered": 0,
        "in_flight": 3,
    }
    assert adds_up(mid)
    clock.now += 1.0  # ids[3] and ids[4] time out; ids[5] was sent later but also overdue
    pub.on_result("local/result", ok(ids[3]))  # in time: the snapshot has not expired it yet
    snap = pub.snapshot()
    assert snap["requests"]["unanswered"] == 2 and snap["requests"]["in_flight"] == 0
    pub.on_result("local/result", ok(ids[4]))  # late: still unanswered, counted as late
    offered_after = pub.offer(frame, 8, clock.now)
    assert offered_after
    pub.expire(everything=True)  # the camera stops: what is in flight is unanswered
    final = pub.snapshot()
    assert final["requests"] == {
        "sent": 9,
        "ok": 3,
        "error": 1,
        "publish_failed": 2,
        "unanswered": 3,
        "in_flight": 0,
    }
    assert adds_up(final["requests"])
    assert final["late"] == 1 and final["duplicates"] == 1
    assert final["answered"] == final["ok"] + final["requests"]["error"] == 4
    assert final["lost"] == final["requests"]["unanswered"]
    assert final["errors"] == {"OVERLOADED": 1, "PUBLISH_FAILED": 2}
    assert len(bus.requests) == 8, "no frame was sent twice (frames are not retried)"
