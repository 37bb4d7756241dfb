"""Hostile peers: the core drops a broken connection and keeps serving everyone else.

All tests share one core (module scope), so damage done by one test would show in the next. After
each test every raw connection is closed, the core must forget all of them, and a fresh client must
still get CONNECT -> subscribe -> publish -> event. The last test drives the real
``GreengrassCoreIPCClientV2`` in a subprocess against the same core.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
import stat
import struct
import subprocess
import sys
import textwrap
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ggvision.core import codec, rpc
from ggvision.core.codec import Header
from ggvision.testing.harness import CoreThread, pubsub_policy
from tests.core.conftest import PROTOCOL_ERROR_ON_0, RawClient, kinds

PUBLISH = "aws.greengrass#PublishToTopic"
SUBSCRIBE = "aws.greengrass#SubscribeToTopic"
FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@dataclass
class Shared:
    thread: CoreThread
    probe_token: str  # a well-behaved component
    token: str  # the component the hostile connections authenticate as (when they do)


@pytest.fixture(scope="module")
def shared() -> Iterator[Shared]:
    with CoreThread() as thread:
        probe = thread.register(
            "com.test.Probe", {"accessControl": pubsub_policy(["probe/*"], ["probe/*"])}
        )
        token = thread.register("com.test.Hostile", {"accessControl": pubsub_policy(["*"], ["*"])})
        yield Shared(thread, probe, token)


def _open_connections(core: CoreThread) -> int:
    return core.call(lambda: len(core.ipc.connections))


def _probe(core: CoreThread, token: str) -> None:
    """A fresh well-formed connection gets CONNECT_ACK, a subscription and the published event."""
    c = RawClient(core.socket_path)
    try:
        c.handshake(token)
        sub = c.call(SUBSCRIBE, {"topic": "probe/x"})
        assert kinds([sub]) == [(rpc.APPLICATION_MESSAGE, 0, 1)]
        payload = base64.b64encode(b"\x00\x01ping").decode()
        c.open_stream(
            PUBLISH, {"topic": "probe/x", "publishMessage": {"binaryMessage": {"message": payload}}}
        )
        got = [c.expect(), c.expect()]
        assert sorted(kinds(got)) == [
            (rpc.APPLICATION_MESSAGE, 0, 1),  # the event
            (rpc.APPLICATION_MESSAGE, rpc.TERMINATE_STREAM, 2),  # the publish response
        ]
        event = next(m for m in got if m.get(":stream-id") == 1)
        assert json.loads(event.payload)["binaryMessage"]["message"] == payload
    finally:
        c.close()


@pytest.fixture
def raw(shared: Shared) -> Iterator[Callable[[], RawClient]]:
    """``raw()`` -> a new raw connection to the shared core. Afterwards: the core still serves."""
    clients: list[RawClient] = []

    def make() -> RawClient:
        c = RawClient(shared.thread.socket_path)
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.close()
    deadline = time.monotonic() + 5
    while _open_connections(shared.thread) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _open_connections(shared.thread) == 0, "the core kept a closed connection"
    _probe(shared.thread, shared.probe_token)


def _prelude(total: int, headers_len: int) -> bytes:
    head = struct.pack(">II", total, headers_len)
    return head + struct.pack(">I", zlib.crc32(head))


def _rpc(msg_type: int, flags: int, stream_id: int) -> list[Header]:
    return [
        codec.int32(":message-type", msg_type),
        codec.int32(":message-flags", flags),
        codec.int32(":stream-id", stream_id),
    ]


def _body(msg: Any) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(msg.payload)
    return result


# --- framing -----------------------------------------------------------------------------------

VALID_PUBLISH = codec.encode(
    [*_rpc(0, 0, 1), codec.string("operation", PUBLISH)], b'{"topic": "a"}'
)


def _flip(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", id="http"),
        pytest.param(b"\0" * 64, id="zeros"),
        pytest.param(bytes(range(256)) * 64, id="16KiB-junk"),
        pytest.param(_flip(VALID_PUBLISH, 8 * 9), id="bad-prelude-crc"),
        pytest.param(_flip(VALID_PUBLISH, 8 * (len(VALID_PUBLISH) - 1)), id="bad-message-crc"),
        pytest.param(_flip(VALID_PUBLISH, 8 * 30 + 3), id="bad-header-bit"),
        pytest.param(_prelude(2**31, 0), id="claims-2GB"),
        pytest.param(_prelude(8, 0), id="claims-8-bytes"),
        pytest.param(_prelude(100, 200), id="headers-longer-than-frame"),
        pytest.param(codec.encode_raw(b"\x01a\x0b", b""), id="unknown-header-type"),
        pytest.param(codec.encode_raw(b"\x02\xff\xfe\x00", b""), id="name-not-utf8"),
        pytest.param(codec.encode_raw(b"\x05abc", b""), id="truncated-header"),
    ],
)
@pytest.mark.parametrize("after_handshake", [False, True], ids=["fresh", "connected"])
def test_broken_framing_gets_protocol_error_and_close(
    raw: Callable[[], RawClient], shared: Shared, data: bytes, after_handshake: bool
) -> None:
    c = raw()
    if after_handshake:
        c.handshake(shared.token)
    start = time.monotonic()
    c.send_bytes(data)
    assert kinds(c.until_closed()) == [PROTOCOL_ERROR_ON_0]
    assert time.monotonic() - start < 2  # never waits for the 2 GB body


def test_truncated_frame_then_eof_is_forgotten(
    raw: Callable[[], RawClient], shared: Shared
) -> None:
    c = raw()
    c.handshake(shared.token)
    c.send_bytes(VALID_PUBLISH[:-5])
    c.sock.shutdown(socket.SHUT_WR)
    assert c.until_closed() == []


def test_silent_disconnect_mid_prelude(raw: Callable[[], RawClient]) -> None:
    c = raw()
    c.send_bytes(b"\x00\x00\x00")
    c.sock.shutdown(socket.SHUT_WR)
    assert c.until_closed() == []


# --- handshake ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("msg_type", "stream_id", "headers"),
    [
        pytest.param(rpc.PING, 0, [], id="ping"),
        pytest.param(rpc.PING_RESPONSE, 0, [], id="ping-response"),
        pytest.param(rpc.CONNECT_ACK, 0, [], id="connect-ack"),
        pytest.param(rpc.PROTOCOL_ERROR, 0, [], id="protocol-error"),
        pytest.param(rpc.CONNECT, 1, [codec.string(":version", "0.1.0")], id="connect-on-stream-1"),
        pytest.param(
            rpc.APPLICATION_MESSAGE, 1, [codec.string("operation", PUBLISH)], id="operation"
        ),
    ],
)
def test_anything_before_connect_is_a_protocol_error(
    raw: Callable[[], RawClient], msg_type: int, stream_id: int, headers: list[Header]
) -> None:
    c = raw()
    c.send(msg_type, 0, stream_id, headers, b'{"authToken": "x"}')
    assert kinds(c.until_closed()) == [PROTOCOL_ERROR_ON_0]


def test_second_connect_is_a_protocol_error(raw: Callable[[], RawClient], shared: Shared) -> None:
    c = raw()
    c.handshake(shared.token)
    c.send_connect(shared.token)
    assert kinds(c.until_closed()) == [PROTOCOL_ERROR_ON_0]


@pytest.mark.parametrize("version", ["0.2.0", "", "0.1.0 ", None])
def test_wrong_version_is_refused(
    raw: Callable[[], RawClient], shared: Shared, version: str | None
) -> None:
    c = raw()
    c.send_connect(shared.token, version=version)
    assert kinds(c.until_closed()) == [(rpc.CONNECT_ACK, 0, 0)]


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"not json", id="text"),
        pytest.param(b"\xff\xfe\x00\xd8", id="binary"),
        pytest.param(b"[]", id="list"),
        pytest.param(b'"token"', id="string"),
        pytest.param(b"{}", id="no-token"),
        pytest.param(b'{"authToken": 5}', id="int-token"),
        pytest.param(b'{"authToken": ""}', id="empty-token"),
        pytest.param(b'{"authToken": "unknown"}', id="unknown-token"),
        pytest.param(b'{"authToken": "a"b"}', id="unescaped-quote"),
        # Far deeper than json's recursion limit, yet small enough to be read as a CONNECT.
        pytest.param(b"[" * 16_000, id="deeply-nested"),
    ],
)
def test_garbage_token_is_refused(raw: Callable[[], RawClient], payload: bytes) -> None:
    c = raw()
    c.send(rpc.CONNECT, headers=[codec.string(":version", "0.1.0")], payload=payload)
    assert kinds(c.until_closed()) == [(rpc.CONNECT_ACK, 0, 0)]


def test_refused_connection_is_ignored_until_closed(
    raw: Callable[[], RawClient], shared: Shared
) -> None:
    c = raw()
    c.send_connect("wrong")
    c.open_stream(PUBLISH, {"topic": "a", "publishMessage": {"jsonMessage": {"message": {}}}})
    c.send(rpc.PING)
    assert kinds(c.until_closed()) == [(rpc.CONNECT_ACK, 0, 0)]


# --- rpc headers -------------------------------------------------------------------------------


def _bad_rpc_headers(case: str) -> list[Header]:
    good = {h.name: h for h in _rpc(rpc.PING, 0, 0)}
    if case == "stream-id-int64":
        good[":stream-id"] = Header(":stream-id", codec.T_INT64, 0)
    elif case == "message-type-int64":
        good[":message-type"] = Header(":message-type", codec.T_INT64, rpc.PING)
    elif case == "flags-int16":
        good[":message-flags"] = Header(":message-flags", codec.T_INT16, 0)
    elif case == "message-type-string":
        good[":message-type"] = codec.string(":message-type", "2")
    elif case == "stream-id-bool":
        good[":stream-id"] = Header(":stream-id", codec.T_FALSE, False)
    elif case.startswith("missing-"):
        del good[":" + case.removeprefix("missing-")]
    return list(good.values())


RPC_HEADER_CASES = [
    "stream-id-int64",
    "message-type-int64",
    "flags-int16",
    "message-type-string",
    "stream-id-bool",
    "missing-message-type",
    "missing-message-flags",
    "missing-stream-id",
]


@pytest.mark.parametrize("case", RPC_HEADER_CASES)
@pytest.mark.parametrize("after_handshake", [False, True], ids=["fresh", "connected"])
def test_rpc_headers_must_be_present_and_int32(
    raw: Callable[[], RawClient], shared: Shared, case: str, after_handshake: bool
) -> None:
    c = raw()
    if after_handshake:
        c.handshake(shared.token)
    c.send_bytes(codec.encode(_bad_rpc_headers(case)))
    assert kinds(c.until_closed()) == [PROTOCOL_ERROR_ON_0]


def test_ping_is_answered_with_its_own_headers_and_payload(
    raw: Callable[[], RawClient], shared: Shared
) -> None:
    c = raw()
    c.handshake(shared.token)
    c.send(rpc.PING, headers=[codec.string("x-echo", "me")], payload=b"hello")
    pong = c.expect()
    assert kinds([pong]) == [(rpc.PING_RESPONSE, 0, 0)]
    assert pong.get("x-echo") == "me"
    assert pong.payload == b"hello"


# --- streams -----------------------------------------------------------------------------------


@pytest.mark.parametrize("msg_type", [2, 3, 4, 5, 6, 7, 8, 255])
def test_connection_level_types_on_a_stream_are_protocol_errors(
    raw: Callable[[], RawClient], shared: Shared, msg_type: int
) -> None:
    c = raw()
    c.handshake(shared.token)
    c.send(msg_type, 0, 1, [codec.string("operation", PUBLISH)], b"{}")
    assert kinds(c.until_closed()) == [PROTOCOL_ERROR_ON_0]


@pytest.mark.parametrize(
    "msg_type", [rpc.APPLICATION_MESSAGE, rpc.APPLICATION_ERROR, rpc.CONNECT_ACK, 8, -1]
)
def test_stream_types_on_stream_zero_are_protocol_errors(
    raw: Callable[[], RawClient], shared: Shared, msg_type: int
) -> None:
    c = raw()
    c.handshake(shared.token)
    c.send(msg_type, 0, 0, [codec.string("operation", PUBLISH)], b"{}")
    assert kinds(c.until_closed()) == [PROTOCOL_ERROR_ON_0]


@pytest.mark.parametrize("first_id", [2, 100, 2**31 - 1, -1])
def test_stream_id_that_skips_ahead_is_a_protocol_error(
    raw: Callable[[], RawClient], shared: Shared, first_id: int
) -> None:
    c = raw()
    c.handshake(shared.token)
    c.send(rpc.APPLICATION_MESSAGE, 0, first_id, [codec.string("operation", PUBLISH)], b"{}")
    assert kinds(c.until_closed()) == [PROTOCOL_ERROR_ON_0]


def test_gap_after_a_good_stream_is_a_protocol_error(
    raw: Callable[[], RawClient], shared: Shared
) -> None:
    c = raw()
    c.handshake(shared.token)
    c.call(SUBSCRIBE, {"topic": "a"})
    c.send(rpc.APPLICATION_MESSAGE, 0, 3, [codec.string("operation", SUBSCRIBE)], b"{}")
    assert kinds(c.until_closed()) == [PROTOCOL_ERROR_ON_0]


@pytest.mark.parametrize("operation", [None, "", 7])
def test_new_stream_without_operation_is_a_protocol_error(
    raw: Callable[[], RawClient], shared: Shared, operation: object
) -> None:
    c = raw()
    c.handshake(shared.token)
    headers: list[Header] = []
    if isinstance(operation, str):
        headers = [codec.string("operation", operation)]
    elif isinstance(operation, int):
        headers = [codec.int32("operation", operation)]
    c.send(rpc.APPLICATION_MESSAGE, 0, 1, headers, b"{}")
    assert kinds(c.until_closed()) == [PROTOCOL_ERROR_ON_0]


def test_message_on_a_closed_stream_is_a_protocol_error(
    raw: Callable[[], RawClient], shared: Shared
) -> None:
    c = raw()
    c.handshake(shared.token)
    reply = c.call(PUBLISH, {"topic": "t", "publishMessage": {"jsonMessage": {"message": {}}}})
    assert kinds([reply]) == [(rpc.APPLICATION_MESSAGE, rpc.TERMINATE_STREAM, 1)]
    c.send(rpc.APPLICATION_MESSAGE, rpc.TERMINATE_STREAM, 1)  # simultaneous close: ignored
    c.send(rpc.PING, payload=b"still here")
    pong = c.expect()
    assert pong.payload == b"still here"
    c.send(rpc.APPLICATION_MESSAGE, 0, 1, [], b"{}")  # not a terminate: a protocol error
    assert kinds(c.until_closed()) == [PROTOCOL_ERROR_ON_0]


def test_stream_opened_and_terminated_in_one_frame_is_not_run(
    raw: Callable[[], RawClient], shared: Shared
) -> None:
    c = raw()
    c.handshake(shared.token)
    c.open_stream(SUBSCRIBE, {"topic": "x"}, flags=rpc.TERMINATE_STREAM)
    reply = c.call(SUBSCRIBE, {"topic": "y"})  # the id was used up: the next one is 2
    assert kinds([reply]) == [(rpc.APPLICATION_MESSAGE, 0, 2)]
    assert shared.thread.call(lambda: shared.thread.ipc.pubsub.subscriptions()) == 1


def test_pipelined_burst_is_answered_in_order(raw: Callable[[], RawClient], shared: Shared) -> None:
    """Hundreds of requests in one write: every response and event, each stream in order."""
    sub, pub = raw(), raw()
    sub.handshake(shared.token)
    pub.handshake(shared.token)
    assert kinds([sub.call(SUBSCRIBE, {"topic": "burst"})]) == [(rpc.APPLICATION_MESSAGE, 0, 1)]
    n = 300
    frames = b"".join(
        codec.encode(
            [*_rpc(rpc.APPLICATION_MESSAGE, 0, i + 1), codec.string("operation", PUBLISH)],
            json.dumps(
                {"topic": "burst", "publishMessage": {"jsonMessage": {"message": {"i": i}}}}
            ).encode(),
        )
        for i in range(n)
    )
    pub.send_bytes(frames)
    responses = [pub.expect() for _ in range(n)]
    events = [sub.expect() for _ in range(n)]
    assert kinds(responses) == [
        (rpc.APPLICATION_MESSAGE, rpc.TERMINATE_STREAM, i + 1) for i in range(n)
    ]
    assert [_body(e)["jsonMessage"]["message"]["i"] for e in events] == list(range(n))


# --- operations the core cannot run: modeled errors, never a hang -----------------------------


@pytest.mark.parametrize(
    ("operation", "body", "text"),
    [
        ("aws.greengrass#NoSuchThing", {}, "Unknown operation aws.greengrass#NoSuchThing"),
        ("not even a name", {}, "Unknown operation"),
        ("aws.greengrass#GetSecretValue", {"secretId": "x"}, "is not supported by Greengrass"),
        ("aws.greengrass#GetThingShadow", {"thingName": "t"}, "is not supported by Greengrass"),
        ("aws.greengrass#SubscribeToCertificateUpdates", {}, "is not supported by Greengrass"),
    ],
)
def test_unrunnable_operation_gets_service_error_and_terminate(
    raw: Callable[[], RawClient], shared: Shared, operation: str, body: Any, text: str
) -> None:
    c = raw()
    c.handshake(shared.token)
    reply = c.call(operation, body)
    assert kinds([reply]) == [(rpc.APPLICATION_ERROR, rpc.TERMINATE_STREAM, 1)]
    assert reply.get("service-model-type") == "aws.greengrass#ServiceError"
    assert reply.get(":content-type") == "application/json"
    assert text in _body(reply)["message"]
    again = c.call(SUBSCRIBE, {"topic": "still/ok"})  # the connection itself is fine
    assert kinds([again]) == [(rpc.APPLICATION_MESSAGE, 0, 2)]


@pytest.mark.parametrize("body", [b"{not json", b"\xff\xfe", b"[1, 2]", b"[" * 100_000])
def test_a_request_that_is_not_a_json_object_gets_the_nucleus_bare_error(
    raw: Callable[[], RawClient], shared: Shared, body: bytes
) -> None:
    """The Nucleus's RPC framework cannot deserialize such a request into the operation's shape
    and answers the bare ``text/plain`` ``InternalServerError`` (issue #17, item 4; the same path
    as the blob that is not base64 below); the connection itself is fine."""
    c = raw()
    c.handshake(shared.token)
    reply = c.call(PUBLISH, body)
    assert kinds([reply]) == [(rpc.APPLICATION_ERROR, rpc.TERMINATE_STREAM, 1)]
    assert reply.get(":content-type") == "text/plain"
    assert reply.get("service-model-type") is None
    assert reply.payload == b"InternalServerError"
    again = c.call(SUBSCRIBE, {"topic": "still/ok"})
    assert kinds([again]) == [(rpc.APPLICATION_MESSAGE, 0, 2)]


def test_a_publish_to_iot_core_payload_that_is_not_base64_gets_the_bare_error(
    raw: Callable[[], RawClient], shared: Shared
) -> None:
    """PublishToIoTCore's ``payload`` is a blob: the Nucleus's framework fails to deserialize a
    request whose payload is not base64 and answers the bare ``InternalServerError``, before
    authorization or the broker (issue #17, item 4; the real client always encodes its bytes,
    so only a raw client can send one)."""
    c = raw()
    c.handshake(shared.token)
    body = {"topicName": "any/topic", "qos": "1", "payload": "!!!notbase64"}
    reply = c.call("aws.greengrass#PublishToIoTCore", body)
    assert kinds([reply]) == [(rpc.APPLICATION_ERROR, rpc.TERMINATE_STREAM, 1)]
    assert reply.get(":content-type") == "text/plain"
    assert reply.payload == b"InternalServerError"


@pytest.mark.parametrize("blob", ["!!!notbase64", "AAA", "AA==AA==", "AAAA\n", "\u00e9"])
def test_a_binary_message_that_is_not_base64_is_refused_like_the_nucleus(
    raw: Callable[[], RawClient], shared: Shared, blob: str
) -> None:
    """The Nucleus cannot deserialize such a request (its blob adapter throws), and its RPC
    framework answers the bare ``text/plain`` ``InternalServerError``; nothing is published."""
    sub, pub = raw(), raw()
    sub.handshake(shared.token)
    pub.handshake(shared.token)
    assert kinds([sub.call(SUBSCRIBE, {"topic": "b64"})]) == [(rpc.APPLICATION_MESSAGE, 0, 1)]
    bad = {"topic": "b64", "publishMessage": {"binaryMessage": {"message": blob}}}
    reply = pub.call(PUBLISH, bad)
    assert kinds([reply]) == [(rpc.APPLICATION_ERROR, rpc.TERMINATE_STREAM, 1)]
    assert reply.get(":content-type") == "text/plain"
    assert reply.get("service-model-type") is None
    assert reply.payload == b"InternalServerError"
    good = {"topic": "b64", "publishMessage": {"binaryMessage": {"message": "AAAA"}}}
    assert kinds([pub.call(PUBLISH, good)]) == [(rpc.APPLICATION_MESSAGE, rpc.TERMINATE_STREAM, 2)]
    event = sub.expect()  # the first event on the topic is the good one
    assert _body(event)["binaryMessage"]["message"] == "AAAA"


def test_a_blob_that_is_not_base64_fails_before_authorization(
    raw: Callable[[], RawClient], shared: Shared
) -> None:
    """As in the Nucleus, the request is deserialized first: a component without the grant gets
    the deserialization error, and the UnauthorizedError only for a valid blob."""
    c = raw()
    c.handshake(shared.probe_token)  # may publish on probe/* only
    body: dict[str, Any] = {"topic": "elsewhere", "publishMessage": {"binaryMessage": {}}}
    body["publishMessage"]["binaryMessage"]["message"] = "AAA"
    assert c.call(PUBLISH, body).payload == b"InternalServerError"
    body["publishMessage"]["binaryMessage"]["message"] = "AAAA"
    denied = c.call(PUBLISH, body)
    assert denied.get("service-model-type") == "aws.greengrass#UnauthorizedError"


# --- the sockets -------------------------------------------------------------------------------


def test_sockets_are_owner_only(shared: Shared) -> None:
    for path in (shared.thread.socket_path, shared.thread.root / "admin.socket"):
        mode = os.stat(path).st_mode
        assert stat.S_ISSOCK(mode)
        assert stat.S_IMODE(mode) == 0o600, path
    assert stat.S_IMODE(os.stat(shared.thread.root).st_mode) & 0o077 == 0


# --- fuzzing -----------------------------------------------------------------------------------

OPERATIONS = [
    PUBLISH,
    SUBSCRIBE,
    "aws.greengrass#GetConfiguration",
    "aws.greengrass#UpdateState",
    "aws.greengrass#GetSecretValue",
    "x",
]
int32s = st.integers(-(2**31), 2**31 - 1)
small_ints = st.integers(-2, 10)
fuzz_header = st.one_of(
    st.builds(
        codec.int32,
        st.sampled_from([":message-type", ":message-flags", ":stream-id"]),
        st.one_of(small_ints, int32s),
    ),
    st.builds(
        lambda n, v: Header(n, codec.T_INT64, v),
        st.sampled_from([":message-type", ":stream-id"]),
        small_ints,
    ),
    st.builds(codec.string, st.just("operation"), st.sampled_from(OPERATIONS)),
    st.builds(codec.string, st.sampled_from([":version", ":content-type", "x"]), st.text()),
)
fuzz_payload = st.one_of(
    st.binary(max_size=64),
    st.sampled_from(
        [
            b"{}",
            b'{"topic": "f/z"}',
            b'{"topic": "#"}',
            b'{"state": "RUNNING"}',
            b'{"topic": "f", "publishMessage": {"jsonMessage": {"message": {}}}}',
            b'{"authToken": "x"}',
            b"[" * 100_000,
        ]
    ),
)
fuzz_frame = st.builds(
    lambda t, f, s, extra, payload: codec.encode([*_rpc(t, f, s), *extra], payload),
    small_ints,
    st.sampled_from([0, 1, 2, 3, -1]),
    st.integers(-1, 4),
    st.lists(fuzz_header, max_size=3),
    fuzz_payload,
)


def _converse(shared: Shared, handshake: bool, data: list[bytes]) -> list[Any]:
    c = RawClient(shared.thread.socket_path)
    try:
        if handshake:
            c.handshake(shared.token)
        for chunk in data:
            if not c.send_bytes(chunk):
                break
        with contextlib.suppress(OSError):
            c.sock.shutdown(socket.SHUT_WR)
        return c.until_closed()  # fails the test if the core neither answers nor hangs up
    finally:
        c.close()


@pytest.mark.timeout(120)
@FUZZ
@given(handshake=st.booleans(), data=st.lists(st.binary(min_size=1, max_size=300), max_size=4))
def test_fuzz_random_bytes(
    raw: Callable[[], RawClient], shared: Shared, handshake: bool, data: list[bytes]
) -> None:
    replies = _converse(shared, handshake, data)
    assert all(m.get(":message-type") != rpc.INTERNAL_ERROR for m in replies)


@pytest.mark.timeout(120)
@FUZZ
@given(st.data())
def test_fuzz_bit_flipped_frames(
    raw: Callable[[], RawClient], shared: Shared, data: st.DataObject
) -> None:
    bit = data.draw(st.integers(0, len(VALID_PUBLISH) * 8 - 1))
    replies = _converse(shared, True, [_flip(VALID_PUBLISH, bit)])
    assert kinds(replies) == [PROTOCOL_ERROR_ON_0]  # CRC-32 catches every single-bit flip


@pytest.mark.timeout(120)
@FUZZ
@given(handshake=st.booleans(), frames=st.lists(fuzz_frame, min_size=1, max_size=6))
def test_fuzz_well_framed_nonsense(
    raw: Callable[[], RawClient], shared: Shared, handshake: bool, frames: list[bytes]
) -> None:
    replies = _converse(shared, handshake, frames)
    # Every reply is a proper RPC message; no handler crash leaked out as INTERNAL_ERROR.
    for m in replies:
        for name in (":message-type", ":message-flags", ":stream-id"):
            assert any(h.name == name and h.type == codec.T_INT32 for h in m.headers)
        assert m.get(":message-type") != rpc.INTERNAL_ERROR


# --- the real client, after all of the above ---------------------------------------------------

REAL_CLIENT = textwrap.dedent(
    """
    import json, threading
    from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2
    from awsiot.greengrasscoreipc import model

    client = GreengrassCoreIPCClientV2()
    out = {}
    try:
        client.get_secret_value(secret_id="x")
    except Exception as exc:
        out["secret_error"] = [type(exc).__module__, type(exc).__name__,
                               isinstance(exc, model.ServiceError), getattr(exc, "message", "")]
    got = threading.Event()
    events = []
    def on_event(ev):
        events.append(ev.binary_message.message.hex())
        got.set()
    _, op = client.subscribe_to_topic(topic="probe/real", on_stream_event=on_event)
    client.publish_to_topic(topic="probe/real", publish_message=model.PublishMessage(
        binary_message=model.BinaryMessage(message=b"\\x00real")))
    got.wait(10)
    out["events"] = events
    op.close()
    client.close()
    print(json.dumps(out))
    """
)


def _run_real_client(shared: Shared) -> dict[str, Any]:
    env = shared.thread.component_env(
        "com.test.Real", access_control=pubsub_policy(["probe/*"], ["probe/*"])
    )
    proc = subprocess.run(
        [sys.executable, "-c", REAL_CLIENT],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def test_real_client_gets_service_error_and_is_still_served(
    raw: Callable[[], RawClient], shared: Shared
) -> None:
    result = _run_real_client(shared)
    module, name, is_service_error, message = result["secret_error"]
    assert (module, name, is_service_error) == (
        "awsiot.greengrasscoreipc.model",
        "ServiceError",
        True,
    )
    assert "aws.greengrass#GetSecretValue is not supported" in message
    assert result["events"] == [b"\x00real".hex()]
