"""Replies: a result is serialized once, published as those bytes, and one that cannot be
serialized is counted as a failed publish (never raised into the worker)."""

from __future__ import annotations

import json
from concurrent.futures import Future
from typing import Any
from unittest.mock import create_autospec

from ggvision.bus import Bus
from ggvision.contract import InferenceResult, Prediction, result_bytes, result_json
from ggvision.serving import RecentIds
from ggvision.serving.replies import Replies
from tests.serving.test_recent import parsed


def done() -> Future[Any]:
    fut: Future[Any] = Future()
    fut.set_result(None)
    return fut


def ok(rid: str, output: dict[str, Any] | None = None) -> InferenceResult:
    return InferenceResult(
        id=rid,
        status="ok",
        predictions=[Prediction(label="tabby", index=281, score=0.5)],
        output=output,
    )


def test_a_result_goes_out_as_the_bytes_it_was_serialized_to_once() -> None:
    bus = create_autospec(Bus, instance=True)
    bus.publish_bytes.return_value = done()
    replies = Replies(bus, role="classifier", task="classify")
    result = ok("r1")
    replies.stamp(result)
    data = replies.serialize(result)
    assert data is not None and json.loads(data)["task"] == "classify"
    replies.reply(result, "local/result", data)
    bus.publish_bytes.assert_called_once_with("local/result", data)
    bus.publish_json.assert_not_called()
    assert json.loads(data) == result_json(result)
    assert replies.stats.ok == 1 and replies.stats.publish_failures == 0


def test_a_result_that_does_not_serialize_is_a_failed_publish_not_an_exception() -> None:
    bus = create_autospec(Bus, instance=True)
    replies = Replies(bus, role="classifier")
    result = ok("r2", output={"raw": object()})
    assert replies.serialize(result) is None
    replies.reply(result, "local/result", None)
    bus.publish_bytes.assert_not_called()
    assert replies.stats.publish_failures == 1


def test_recent_ids_forget_the_claim_of_a_result_that_does_not_serialize() -> None:
    recent = RecentIds(size=4, seconds=60.0)
    req = parsed("r3")
    claim = recent.claim(req, "t")
    assert claim.key is not None
    recent.finish(claim.key, ok("r3", output={"raw": object()}))
    assert (recent.running(), recent.remembered()) == (0, 0)
    good = recent.claim(parsed("r4"), "t")
    assert good.key is not None
    recent.finish(good.key, ok("r4"), result_bytes(ok("r4")))
    assert recent.claim(parsed("r4"), "t").answer == result_json(ok("r4"))
