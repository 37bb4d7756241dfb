"""The event-stream codec: byte-exact vectors, round trips, botocore as an oracle, and fuzzing.

Vectors are from ``shared/IPC_PROTOCOL.md`` section 2 (captured from the real client).
"""

from __future__ import annotations

import contextlib
import struct
import uuid
import zlib

import pytest
from botocore.eventstream import EventStreamBuffer  # type: ignore[import-untyped]
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ggvision.core import codec
from ggvision.core.codec import Decoder, Header, Message
from ggvision.errors import FrameError

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

CONNECT_HEX = (
    "0000007900000048e9e79475083a76657273696f6e070005302e312e300d3a6d6573736167652d74797065"
    "04000000040e3a6d6573736167652d666c61677304000000000a3a73747265616d2d696404000000007b22"
    "61757468546f6b656e223a2022505542544f4b454e3030303030303041227de531c8ca"
)
CONNECT_HEADERS = [
    codec.string(":version", "0.1.0"),
    codec.int32(":message-type", 4),
    codec.int32(":message-flags", 0),
    codec.int32(":stream-id", 0),
]
CONNECT_PAYLOAD = b'{"authToken": "PUBTOKEN0000000A"}'

CONNECT_ACK_HEX = (
    "0000004700000037374cfe3f0d3a6d6573736167652d7479706504000000050e3a6d6573736167652d666c"
    "61677304000000010a3a73747265616d2d69640400000000e237e27d"
)
CONNECT_ACK_HEADERS = [
    codec.int32(":message-type", 5),
    codec.int32(":message-flags", 1),
    codec.int32(":stream-id", 0),
]

VECTORS = [
    pytest.param(CONNECT_HEX, CONNECT_HEADERS, CONNECT_PAYLOAD, 121, id="connect"),
    pytest.param(CONNECT_ACK_HEX, CONNECT_ACK_HEADERS, b"", 71, id="connect-ack"),
]


# --- strategies --------------------------------------------------------------------------------

header_names = st.text(min_size=1, max_size=40).filter(lambda s: len(s.encode()) <= 255)
int64s = st.integers(-(2**63), 2**63 - 1)
typed_values = st.one_of(
    st.tuples(st.just(codec.T_TRUE), st.just(True)),
    st.tuples(st.just(codec.T_FALSE), st.just(False)),
    st.tuples(st.just(codec.T_BYTE), st.integers(-128, 127)),
    st.tuples(st.just(codec.T_INT16), st.integers(-(2**15), 2**15 - 1)),
    st.tuples(st.just(codec.T_INT32), st.integers(-(2**31), 2**31 - 1)),
    st.tuples(st.just(codec.T_INT64), int64s),
    st.tuples(st.just(codec.T_BYTES), st.binary(max_size=300)),
    st.tuples(st.just(codec.T_STRING), st.text(max_size=100)),
    st.tuples(st.just(codec.T_TIMESTAMP), int64s),
    st.tuples(st.just(codec.T_UUID), st.uuids()),
)
headers_st = st.lists(
    st.builds(lambda name, tv: Header(name, tv[0], tv[1]), header_names, typed_values),
    max_size=8,
    unique_by=lambda h: h.name,  # botocore keeps headers in a dict
)
messages_st = st.builds(Message, headers_st, st.binary(max_size=600))


def frame(header_block: bytes, payload: bytes = b"") -> bytes:
    """A frame with correct lengths and CRCs around an arbitrary (possibly invalid) header block."""
    return codec.encode_raw(header_block, payload)


def prelude(total: int, headers_len: int) -> bytes:
    head = struct.pack(">II", total, headers_len)
    return head + struct.pack(">I", zlib.crc32(head))


def decode_one(data: bytes) -> Message:
    messages = Decoder().feed(data)
    assert len(messages) == 1
    return messages[0]


# --- the captured vectors ----------------------------------------------------------------------


@pytest.mark.parametrize(("hex_", "headers", "payload", "size"), VECTORS)
def test_encoder_reproduces_the_captured_bytes(
    hex_: str, headers: list[Header], payload: bytes, size: int
) -> None:
    data = codec.encode(headers, payload)
    assert data.hex() == hex_
    assert len(data) == size


@pytest.mark.parametrize(("hex_", "headers", "payload", "size"), VECTORS)
def test_decoder_reads_the_captured_bytes_with_types(
    hex_: str, headers: list[Header], payload: bytes, size: int
) -> None:
    msg = decode_one(bytes.fromhex(hex_))
    assert msg.headers == headers  # names, values and type ids (int32 / string)
    assert [h.type for h in msg.headers] == [h.type for h in headers]
    assert msg.payload == payload
    assert codec.encode(msg.headers, msg.payload).hex() == hex_


def test_header_lookup_is_case_insensitive() -> None:
    msg = decode_one(bytes.fromhex(CONNECT_HEX))
    assert msg.get(":Message-Type") == 4
    assert msg.get(":VERSION") == "0.1.0"
    assert msg.get("operation") is None


def test_pre_encoded_header_block_gives_the_same_bytes() -> None:
    block = codec.encode_header_block(CONNECT_HEADERS)
    assert codec.encode_raw(block, CONNECT_PAYLOAD).hex() == CONNECT_HEX


def test_empty_message_is_sixteen_bytes() -> None:
    data = codec.encode([])
    assert len(data) == codec.MIN_MESSAGE_LEN
    assert decode_one(data) == Message([], b"")


# --- round trips -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [
        Header("t", codec.T_TRUE, True),
        Header("f", codec.T_FALSE, False),
        Header("b", codec.T_BYTE, -128),
        Header("s", codec.T_INT16, -32768),
        Header("i", codec.T_INT32, 2**31 - 1),
        Header("l", codec.T_INT64, -(2**63)),
        Header("buf", codec.T_BYTES, bytes(range(256))),
        Header("str", codec.T_STRING, "h\u00e9llo \u2603"),
        Header("ts", codec.T_TIMESTAMP, 1_704_164_645_600),
        Header("id", codec.T_UUID, uuid.UUID("12345678-1234-5678-1234-567812345678")),
        Header("long", codec.T_STRING, "x" * codec.MAX_HEADER_VALUE_LEN),
        Header("n" * 255, codec.T_BYTES, b""),
    ],
    ids=lambda h: f"type{h.type}-{h.name[:8]}",
)
def test_every_header_type_round_trips(header: Header) -> None:
    msg = decode_one(codec.encode([header], b"payload"))
    assert msg.headers == [header]
    assert msg.payload == b"payload"


@FUZZ
@given(messages_st)
def test_round_trip(msg: Message) -> None:
    assert decode_one(codec.encode(msg.headers, msg.payload)) == msg


def _botocore_value(h: Header) -> object:
    return h.value.bytes if isinstance(h.value, uuid.UUID) else h.value


@FUZZ
@given(st.lists(messages_st, min_size=1, max_size=4))
def test_botocore_decodes_what_we_encode(messages: list[Message]) -> None:
    buf = EventStreamBuffer()
    buf.add_data(b"".join(codec.encode(m.headers, m.payload) for m in messages))
    decoded = list(buf)
    assert len(decoded) == len(messages)
    for theirs, ours in zip(decoded, messages, strict=True):
        assert theirs.payload == ours.payload
        assert theirs.headers == {h.name: _botocore_value(h) for h in ours.headers}


@FUZZ
@given(st.lists(messages_st, min_size=1, max_size=5), st.data())
def test_any_chunking_yields_the_same_messages(
    messages: list[Message], data: st.DataObject
) -> None:
    stream = b"".join(codec.encode(m.headers, m.payload) for m in messages)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=20)))
    decoder = Decoder()
    got: list[Message] = []
    start = 0
    for cut in [*cuts, len(stream)]:
        got += decoder.feed(stream[start:cut])
        start = cut
    assert got == messages


def test_byte_at_a_time_decoding() -> None:
    stream = bytes.fromhex(CONNECT_HEX) + bytes.fromhex(CONNECT_ACK_HEX)
    decoder = Decoder()
    got = [m for i in range(len(stream)) for m in decoder.feed(stream[i : i + 1])]
    assert [m.get(":message-type") for m in got] == [4, 5]


# --- corruption --------------------------------------------------------------------------------

VALID = bytes.fromhex(CONNECT_HEX)


def _flip(data: bytes, byte: int, bit: int = 0) -> bytes:
    out = bytearray(data)
    out[byte] ^= 1 << bit
    return bytes(out)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        pytest.param(_flip(VALID, 9), "prelude CRC", id="prelude-crc"),
        pytest.param(_flip(VALID, 2), "prelude CRC", id="total-length-bit"),
        pytest.param(_flip(VALID, len(VALID) - 1), "message CRC", id="message-crc"),
        pytest.param(_flip(VALID, 100), "message CRC", id="payload-bit"),
        pytest.param(_flip(VALID, 20), "message CRC", id="header-bit"),
        pytest.param(prelude(15, 0) + b"\0" * 4, "out of range", id="shorter-than-minimum"),
        pytest.param(prelude(2**31, 0), "out of range", id="claims-2GB"),
        pytest.param(prelude(codec.MAX_MESSAGE_LEN + 1, 0), "out of range", id="over-24MiB"),
        pytest.param(prelude(20, 5), "header length", id="headers-longer-than-message"),
        pytest.param(frame(b"\x05abc"), "truncated", id="truncated-name"),
        pytest.param(frame(b"\x00\x04"), "empty header name", id="empty-name"),
        pytest.param(frame(b"\x01a\x04\x00\x00"), "truncated value", id="truncated-int32"),
        pytest.param(frame(b"\x01a\x09" + b"\0" * 15), "truncated value", id="truncated-uuid"),
        pytest.param(frame(b"\x01a\x07\x00"), "truncated length", id="truncated-str-length"),
        pytest.param(frame(b"\x01a\x07\x00\x05ab"), "truncated value", id="truncated-string"),
        pytest.param(frame(b"\x01a\x0a"), "unknown header type", id="type-10"),
        pytest.param(frame(b"\x01a\xff"), "unknown header type", id="type-255"),
        pytest.param(frame(b"\x02\xff\xfe\x00"), "not UTF-8", id="name-not-utf8"),
        pytest.param(frame(b"\x01a\x07\x00\x02\xc3\x28"), "not UTF-8", id="value-not-utf8"),
    ],
)
def test_corrupt_frames_raise_frame_error(data: bytes, reason: str) -> None:
    with pytest.raises(FrameError) as excinfo:
        Decoder().feed(data)
    assert reason in str(excinfo.value)


def test_too_many_headers_is_rejected() -> None:
    block = b"\x01a\x00" * (codec.MAX_HEADERS + 1)
    with pytest.raises(FrameError) as excinfo:
        Decoder().feed(frame(block))
    assert "too many headers" in str(excinfo.value)


def test_oversized_frame_is_rejected_from_its_prelude_alone() -> None:
    decoder = Decoder(max_message_len=1024)
    with pytest.raises(FrameError):
        decoder.feed(prelude(1025, 0))  # no need to wait for (or buffer) the body


def test_incomplete_frame_waits_for_more() -> None:
    decoder = Decoder()
    assert decoder.feed(VALID[:-1]) == []
    assert len(decoder.feed(VALID[-1:])) == 1


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param([Header("", codec.T_TRUE, True)], id="empty-name"),
        pytest.param([Header("n" * 256, codec.T_TRUE, True)], id="name-256-bytes"),
        pytest.param([codec.string("v", "x" * 32768)], id="value-too-long"),
        pytest.param([Header("u", codec.T_UUID, b"short")], id="uuid-not-16-bytes"),
        pytest.param([Header("x", 10, 0)], id="unknown-type"),
        pytest.param([Header("x", codec.T_TRUE, True)] * 1025, id="too-many-headers"),
    ],
)
def test_encoder_refuses_what_cannot_be_framed(headers: list[Header]) -> None:
    with pytest.raises(FrameError):
        codec.encode(headers)


def test_encoder_refuses_messages_over_the_limit() -> None:
    with pytest.raises(FrameError):
        codec.encode([], b"\0" * codec.MAX_MESSAGE_LEN)


# --- fuzzing: only FrameError, never a hang ----------------------------------------------------


def _feed_all(data: bytes, chunk: int) -> list[Message]:
    decoder = Decoder()
    out: list[Message] = []
    for i in range(0, len(data), chunk):
        out += decoder.feed(data[i : i + chunk])
    return out


@pytest.mark.timeout(60)
@FUZZ
@given(st.binary(max_size=2000), st.integers(1, 64))
def test_random_bytes_only_raise_frame_error(data: bytes, chunk: int) -> None:
    with contextlib.suppress(FrameError):
        _feed_all(data, chunk)


@pytest.mark.timeout(60)
@FUZZ
@given(st.binary(max_size=400), st.binary(max_size=100))
def test_random_header_blocks_in_valid_frames_only_raise_frame_error(
    block: bytes, payload: bytes
) -> None:
    try:
        messages = Decoder().feed(frame(block, payload))
    except FrameError:
        return
    # Whatever decodes must encode back to the same frame.
    assert [codec.encode(m.headers, m.payload) for m in messages] == [frame(block, payload)]


@pytest.mark.timeout(60)
@FUZZ
@given(messages_st, st.data())
def test_any_single_bit_flip_is_detected(msg: Message, data: st.DataObject) -> None:
    valid = codec.encode(msg.headers, msg.payload)
    bit = data.draw(st.integers(0, len(valid) * 8 - 1))
    # CRC-32 catches every single-bit error, in the prelude and in the body.
    with pytest.raises(FrameError):
        _feed_all(_flip(valid, bit // 8, bit % 8), len(valid))


@pytest.mark.parametrize("read", [4096, codec.READ_SIZE, 3 * codec.READ_SIZE])
def test_reads_into_the_decoders_buffer_across_large_messages(read: int) -> None:
    big = Message([codec.string("k", "v")], bytes(range(256)) * 2000)  # 512 KB, over the buffer
    small = Message(CONNECT_HEADERS, CONNECT_PAYLOAD)
    stream = b"".join(codec.encode(m.headers, m.payload) for m in (small, big, small, big, small))
    decoder = Decoder()
    got: list[Message] = []
    pos = 0
    while pos < len(stream):
        room = decoder.get_buffer(-1)
        assert len(room) >= codec.READ_SIZE  # a read's worth, always
        n = min(read, len(room), len(stream) - pos)
        room[:n] = stream[pos : pos + n]
        del room
        got += decoder.buffer_updated(n)
        pos += n
    assert got == [small, big, small, big, small]
    assert len(decoder.get_buffer(-1)) <= 4 * codec.READ_SIZE  # a big buffer goes once empty
