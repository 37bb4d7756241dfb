"""Property-based fuzzing of the request parser (``ggvision.contract``) and of the classifier's
intake: whatever arrives, the outcome is a valid request or one structured error, never another
exception. (The IPC codec and the core's frame handling are fuzzed in tests/core/test_codec.py
and tests/core/test_hostile.py.)"""

from __future__ import annotations

import json
from concurrent.futures import Future
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ggvision.contract import (
    MAX_ID_LENGTH,
    InferenceRequest,
    RequestError,
    decode_payload,
    parse_request,
)
from ggvision.serving import Worker
from ggvision.serving.images import ImageLoader

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.sampled_from(["/tmp/a.jpg", "local/result", "AAAA", "", "../x", "\x00"]),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=20,
)
KEYS = ["id", "image", "top_k", "threshold", "reply_topic", "source", "image_dir", "fname"]
image_values = st.one_of(
    json_values,
    st.fixed_dictionaries({"path": json_values}),
    st.fixed_dictionaries({"data": json_values}),
    st.fixed_dictionaries(
        {"frame": st.dictionaries(st.sampled_from(["ring", "slot", "seq", "x"]), json_values)}
    ),
)
near_requests = st.dictionaries(
    st.one_of(st.sampled_from(KEYS), st.text(max_size=8)),
    st.one_of(json_values, image_values),
    max_size=6,
)


def parse(payload: bytes) -> InferenceRequest | RequestError:
    try:
        return parse_request(decode_payload(payload))
    except RequestError as exc:
        return exc


@FUZZ
@given(st.binary(max_size=400))
def test_any_bytes_parse_or_fail_with_a_request_error(payload: bytes) -> None:
    outcome = parse(payload)
    assert isinstance(outcome, InferenceRequest | RequestError)
    if isinstance(outcome, RequestError):
        assert outcome.message


@FUZZ
@given(st.one_of(json_values, near_requests))
def test_any_json_parses_or_fails_with_a_request_error(value: Any) -> None:
    outcome = parse(json.dumps(value).encode())
    if isinstance(outcome, InferenceRequest):
        assert 0 < len(outcome.id) <= MAX_ID_LENGTH
        assert isinstance(value, dict)
        if isinstance(value.get("id"), str):
            assert outcome.id == value["id"]
    else:
        assert isinstance(outcome, RequestError)


@FUZZ
@given(st.integers(1, 200_000), st.sampled_from(["[", '{"a":', '[{"b":']))
def test_nesting_of_any_depth_is_handled(depth: int, opener: str) -> None:
    closer = {"[": "]", '{"a":': "}", '[{"b":': "}]"}[opener]
    payload = (opener * depth + "1" + closer * depth).encode()
    outcome = parse(payload)
    assert isinstance(outcome, RequestError)


class RecordingBus:
    """Records what the classifier publishes (its pub/sub side only: intake needs no more)."""

    def __init__(self) -> None:
        self.published: list[tuple[str, dict[str, Any]]] = []

    def publish_json(self, topic: str, obj: dict[str, Any]) -> Future[Any]:
        self.published.append((topic, obj))
        done: Future[Any] = Future()
        done.set_result(None)
        return done

    def publish_bytes(self, topic: str, data: bytes) -> Future[Any]:
        return self.publish_json(topic, json.loads(data))


@FUZZ
@given(st.one_of(st.binary(max_size=300), near_requests.map(lambda d: json.dumps(d).encode())))
def test_intake_answers_or_accepts_each_message_exactly_once(payload: bytes) -> None:
    bus = RecordingBus()
    classifier = Worker(
        bus,  # type: ignore[arg-type]
        result_topic="local/result",
        loader=ImageLoader([], max_bytes=1 << 20, max_pixels=1 << 20),
        queue_size=4,
        top_k=5,
        threshold=0.0,
        reply_topic_allowed=lambda topic: topic == "local/result",
    )
    classifier.on_message("local/inference", payload)  # never raises
    accepted = classifier.queue_depth()
    assert len(bus.published) + accepted == 1
    for topic, reply in bus.published:
        assert topic == "local/result"
        assert reply["status"] == "error"
        assert reply["error"]["code"] != "INTERNAL", reply
        assert 0 < len(reply["id"]) <= MAX_ID_LENGTH


def _worker(bus: RecordingBus) -> Worker:
    return Worker(
        bus,  # type: ignore[arg-type]
        result_topic="local/result",
        loader=ImageLoader([], max_bytes=1 << 20, max_pixels=1 << 20),
        queue_size=4,
        top_k=5,
        threshold=0.0,
        reply_topic_allowed=lambda topic: topic.startswith("local/result"),
    )


@FUZZ
@given(
    st.text(min_size=1, max_size=MAX_ID_LENGTH),
    near_requests,
    st.sampled_from([b', "x": "\xff"}', b', "x": ' + b"[" * 100_000]),
)
def test_an_undecodable_request_is_answered_under_its_own_id(
    rid: str, rest: dict[str, Any], tail: bytes
) -> None:
    bus = RecordingBus()
    body = json.dumps({"id": rid, **{k: v for k, v in rest.items() if k != "id"}}).encode()
    _worker(bus).on_message("local/inference", body[:-1] + tail)
    [(_, reply)] = bus.published
    assert (reply["id"], reply["error"]["code"]) == (rid, "INVALID_REQUEST")


@pytest.mark.parametrize(
    ("reply_topic", "answered_on"),
    [("local/result/me", "local/result/me"), ("local/elsewhere", "local/result")],
)
def test_an_undecodable_requests_reply_topic_is_checked_like_any_other(
    reply_topic: str, answered_on: str
) -> None:
    bus = RecordingBus()
    payload = json.dumps({"id": "r1", "reply_topic": reply_topic, "source": "cam"}).encode()
    _worker(bus).on_message("local/inference", payload[:-1] + b', "x": "\xff"}')
    [(topic, reply)] = bus.published
    assert topic == answered_on
    assert (reply["id"], reply["source"], reply["error"]["code"]) == (
        "r1",
        "cam",
        "INVALID_REQUEST",
    )
