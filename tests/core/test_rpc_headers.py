"""codec's RPC layer: read_rpc (one call per message in) and encode_rpc (one per message out)."""

from __future__ import annotations

from typing import Any

import pytest

from ggvision.core import codec
from ggvision.core.codec import Header, Message
from ggvision.errors import ProtocolError


def _rpc(t: int, f: int, s: int) -> list[Header]:
    return [
        codec.int32(":message-type", t),
        codec.int32(":message-flags", f),
        codec.int32(":stream-id", s),
    ]


JSON = "application/json"
ECHO = [codec.string("x-echo", "me"), Header("n", codec.T_INT64, 7)]


@pytest.mark.parametrize(
    ("kwargs", "tail"),
    [
        pytest.param({}, [], id="bare"),
        pytest.param({"content_type": JSON}, [codec.string(":content-type", JSON)], id="json"),
        pytest.param(
            {"content_type": JSON, "model": "aws.greengrass#XResponse"},
            [
                codec.string(":content-type", JSON),
                codec.string("service-model-type", "aws.greengrass#XResponse"),
            ],
            id="json-and-model",
        ),
        pytest.param({"headers": ECHO}, ECHO, id="echoed"),
    ],
)
def test_encode_rpc_is_the_generic_encoding_of_the_same_headers(
    kwargs: dict[str, Any], tail: list[Header]
) -> None:
    out = codec.encode_rpc(0, 2, 9, b'{"a": 1}', **kwargs)
    assert out == codec.encode([*_rpc(0, 2, 9), *tail], b'{"a": 1}')
    (back,) = codec.Decoder().feed(out)
    assert back.headers == [*_rpc(0, 2, 9), *tail]


def test_read_rpc_takes_the_first_header_of_a_name_whatever_its_case() -> None:
    msg = Message(
        [
            codec.int32(":Message-Type", 0),
            codec.int32(":message-flags", 2),
            codec.int32(":STREAM-ID", 3),
            codec.string("Operation", "aws.greengrass#A"),
            codec.string("operation", "aws.greengrass#B"),
            codec.string(":version", "0.1.0"),
            codec.int32(":message-type", 9),
        ],
        b"{}",
    )
    rpc = codec.read_rpc(msg)
    assert (rpc.type, rpc.flags, rpc.stream_id) == (0, 2, 3)
    assert (rpc.operation, rpc.version, rpc.payload) == ("aws.greengrass#A", "0.1.0", b"{}")


def test_read_rpc_hides_an_operation_header_that_is_not_a_string() -> None:
    rpc = codec.read_rpc(Message([*_rpc(0, 0, 1), codec.int32("operation", 5)]))
    assert rpc.operation is None and rpc.version is None


@pytest.mark.parametrize(
    ("headers", "error"),
    [
        pytest.param([], "missing :message-type header", id="none"),
        pytest.param(
            [codec.int32(":stream-id", 1), Header(":message-type", codec.T_INT64, 0)],
            ":message-type header must be int32",
            id="type-checked-first",
        ),
        pytest.param(
            [codec.int32(":message-type", 0), codec.int32(":stream-id", 1)],
            "missing :message-flags header",
            id="flags-before-stream",
        ),
        pytest.param(
            [*_rpc(0, 0, 1)[:2], codec.string(":stream-id", "1")],
            ":stream-id header must be int32",
            id="stream-id-string",
        ),
    ],
)
def test_read_rpc_refuses_missing_or_mistyped_rpc_headers(
    headers: list[Header], error: str
) -> None:
    with pytest.raises(ProtocolError) as exc:
        codec.read_rpc(Message(headers))
    assert str(exc.value) == error
