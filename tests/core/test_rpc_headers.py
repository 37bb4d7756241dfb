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


# --- RpcDecoder: read_rpc on every message, the last header block kept -------------------------

PUBLISH = "aws.greengrass#PublishToTopic"


def _request(stream_id: int, operation: str = PUBLISH, extra: list[Header] | None = None) -> bytes:
    return codec.encode(
        [
            codec.int32(":message-type", 0),
            codec.int32(":message-flags", 0),
            codec.int32(":stream-id", stream_id),
            codec.string("operation", operation),
            codec.string(":content-type", JSON),
            *(extra or []),
        ],
        f'{{"n": {stream_id}}}'.encode(),
    )


def _read_all(frames: list[bytes], chunk: int) -> list[codec.RpcMessage]:
    stream = b"".join(frames)
    decoder = codec.RpcDecoder()
    got: list[codec.RpcMessage] = []
    for start in range(0, len(stream), chunk):
        part = stream[start : start + chunk]
        decoder.get_buffer(len(part))[: len(part)] = part
        got += decoder.buffer_updated(len(part))
    return got


@pytest.mark.parametrize("chunk", [1, 7, 100, 1 << 20])
def test_rpc_decoder_reads_as_read_rpc_whatever_repeats(chunk: int) -> None:
    frames = [
        _request(1),
        _request(2),  # the stream id differs only
        _request(3, "aws.greengrass#PublishToTopix"),  # same length, another operation
        _request(4, extra=[codec.int32("n", 4)]),
        _request(5, extra=[codec.int32("n", 5)]),  # two int32s differ: not the stream id alone
        _request(0x7FFFFF06),
        _request(7),
        codec.encode([*_rpc(2, 0, 0), *ECHO]),  # a ping between two requests
        _request(8),
    ]
    want = [codec.read_rpc(m) for m in codec.Decoder().feed(b"".join(frames))]
    got = _read_all(frames, chunk)
    assert got == want
    assert [m.stream_id for m in got] == [1, 2, 3, 4, 5, 0x7FFFFF06, 7, 0, 8]
    assert got[2].operation == "aws.greengrass#PublishToTopix"
    assert [h.value for h in got[4].headers if h.name == "n"] == [5]


def test_rpc_decoder_takes_the_stream_id_read_rpc_takes() -> None:
    def block(first: int, second: int) -> bytes:
        return codec.encode(
            [
                codec.int32(":message-type", 0),
                codec.int32(":message-flags", 0),
                codec.int32(":STREAM-ID", first),
                codec.int32(":stream-id", second),
            ]
        )

    frames = [block(1, 50), block(2, 50), block(2, 51), block(3, 52)]
    got = _read_all(frames, 1 << 20)
    assert [m.stream_id for m in got] == [1, 2, 2, 3]
    assert got == [codec.read_rpc(m) for m in codec.Decoder().feed(b"".join(frames))]


def test_rpc_decoder_refuses_what_read_rpc_refuses() -> None:
    decoder = codec.RpcDecoder()
    assert [m.stream_id for m in decoder.feed(_request(1))] == [1]
    bad = codec.encode([codec.int32(":message-type", 0), codec.int32(":message-flags", 0)])
    with pytest.raises(ProtocolError) as info:
        decoder.feed(bad)
    assert "missing :stream-id" in str(info.value)
