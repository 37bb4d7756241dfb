"""Event-stream message codec (the framing under Greengrass IPC).

One message: ``total:u32 | headers_len:u32 | prelude_crc:u32 | headers | payload | crc:u32``,
big-endian, CRC-32 (zlib polynomial). Headers are ``name_len:u8 | name | type:u8 | value``.
See ``shared/IPC_PROTOCOL.md`` section 2.

The RPC layer above reads and writes its headers (``:message-type``, ``:message-flags``,
``:stream-id``, ``:content-type``, ``service-model-type``, ``operation``, ``:version``) only through
:func:`read_rpc` (one call per message in) and :func:`encode_rpc` / :func:`encode_raw` with a head
from :func:`rpc_head` (one call per message out).
"""

from __future__ import annotations

import functools
import struct
import uuid
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final, Generic, NamedTuple, TypeVar

from ggvision.errors import FrameError, ProtocolError

PRELUDE_LEN: Final = 12
TRAILER_LEN: Final = 4
MIN_MESSAGE_LEN: Final = PRELUDE_LEN + TRAILER_LEN
MAX_MESSAGE_LEN: Final = 24 * 1024 * 1024
MAX_HEADER_VALUE_LEN: Final = 32767
MAX_HEADERS: Final = 1024

_PRELUDE = struct.Struct(">III")
_U32 = struct.Struct(">I")
_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_I64 = struct.Struct(">q")
_U16 = struct.Struct(">H")

# Header value type ids.
T_TRUE: Final = 0
T_FALSE: Final = 1
T_BYTE: Final = 2
T_INT16: Final = 3
T_INT32: Final = 4
T_INT64: Final = 5
T_BYTES: Final = 6
T_STRING: Final = 7
T_TIMESTAMP: Final = 8
T_UUID: Final = 9

HeaderValue = bool | int | bytes | str | uuid.UUID


class Header(NamedTuple):
    """One typed header. ``type`` is kept so int32 and int64 stay distinct on the wire.

    A named tuple: one is made per header of every message received (the hot path)."""

    name: str
    type: int
    value: HeaderValue


@dataclass(slots=True)
class Message:
    headers: list[Header] = field(default_factory=list)
    payload: bytes = b""

    def get(self, name: str) -> HeaderValue | None:
        """Header value by case-insensitive name (the RPC layer compares names that way)."""
        lname = name.lower()
        for h in self.headers:
            if h.name.lower() == lname:
                return h.value
        return None


def int32(name: str, value: int) -> Header:
    return Header(name, T_INT32, value)


def string(name: str, value: str) -> Header:
    return Header(name, T_STRING, value)


def _encode_header(h: Header, out: bytearray) -> None:
    name = h.name.encode("utf-8")
    if not 1 <= len(name) <= 255:
        raise FrameError(f"header name length {len(name)} out of range 1..255")
    out.append(len(name))
    out += name
    out.append(h.type)
    t, v = h.type, h.value
    if t in (T_TRUE, T_FALSE):
        return
    if t == T_BYTE:
        out += struct.pack(">b", v)
    elif t == T_INT16:
        out += _I16.pack(v)
    elif t == T_INT32:
        out += _I32.pack(v)
    elif t in (T_INT64, T_TIMESTAMP):
        out += _I64.pack(v)
    elif t in (T_BYTES, T_STRING):
        raw = v.encode("utf-8") if isinstance(v, str) else bytes(v)  # type: ignore[arg-type]
        if len(raw) > MAX_HEADER_VALUE_LEN:
            raise FrameError(f"header {h.name!r} value too long ({len(raw)} bytes)")
        out += _U16.pack(len(raw))
        out += raw
    elif t == T_UUID:
        raw = v.bytes if isinstance(v, uuid.UUID) else bytes(v)  # type: ignore[arg-type]
        if len(raw) != 16:
            raise FrameError("uuid header must be 16 bytes")
        out += raw
    else:
        raise FrameError(f"unknown header type {t}")


def encode(headers: list[Header], payload: bytes = b"") -> bytes:
    """Encode one message."""
    hbuf = bytearray()
    if len(headers) > MAX_HEADERS:
        raise FrameError(f"too many headers ({len(headers)})")
    for h in headers:
        _encode_header(h, hbuf)
    total = PRELUDE_LEN + len(hbuf) + len(payload) + TRAILER_LEN
    if total > MAX_MESSAGE_LEN:
        raise FrameError(f"message too large ({total} bytes)")
    prelude = struct.pack(">II", total, len(hbuf))
    prelude_crc = zlib.crc32(prelude)
    out = bytearray(prelude)
    out += _U32.pack(prelude_crc)
    out += hbuf
    out += payload
    out += _U32.pack(zlib.crc32(out))
    return bytes(out)


_FIXED_SIZE = {
    T_BYTE: struct.Struct(">b"),
    T_INT16: _I16,
    T_INT32: _I32,
    T_INT64: _I64,
    T_TIMESTAMP: _I64,
}


def decode_headers(buf: bytes | memoryview) -> list[Header]:
    # Hot path (every received message): one copy, then plain bytes indexing and unpack_from;
    # strings and int32 (the RPC headers) first.
    data = bytes(buf)
    headers: list[Header] = []
    append = headers.append
    i, n = 0, len(data)
    while i < n:
        if len(headers) >= MAX_HEADERS:
            raise FrameError("too many headers")
        end = i + 1 + data[i]
        if end == i + 1 or end + 1 > n:
            raise FrameError("truncated or empty header name")
        try:
            name = data[i + 1 : end].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise FrameError("header name is not UTF-8") from exc
        t = data[end]
        i = end + 1
        value: HeaderValue
        if t in (T_STRING, T_BYTES):
            if i + 2 > n:
                raise FrameError(f"truncated length of header {name!r}")
            end = i + 2 + ((data[i] << 8) | data[i + 1])
            if end > n:
                raise FrameError(f"truncated value of header {name!r}")
            if t == T_STRING:
                try:
                    value = data[i + 2 : end].decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise FrameError(f"header {name!r} is not UTF-8") from exc
            else:
                value = data[i + 2 : end]
            i = end
        elif t == T_INT32:
            if i + 4 > n:
                raise FrameError(f"truncated value of header {name!r}")
            value = _I32.unpack_from(data, i)[0]
            i += 4
        elif t in _FIXED_SIZE:
            fmt = _FIXED_SIZE[t]
            if i + fmt.size > n:
                raise FrameError(f"truncated value of header {name!r}")
            value = fmt.unpack_from(data, i)[0]
            i += fmt.size
        elif t in (T_TRUE, T_FALSE):
            value = t == T_TRUE
        elif t == T_UUID:
            if i + 16 > n:
                raise FrameError(f"truncated value of header {name!r}")
            value = uuid.UUID(bytes=data[i : i + 16])
            i += 16
        else:
            raise FrameError(f"unknown header type {t} for {name!r}")
        append(Header(name, t, value))
    return headers


# What a read asks room for; a connection's buffer over _KEEP_BUFFER goes once it is empty.
READ_SIZE: Final = 64 * 1024
_KEEP_BUFFER: Final = 4 * READ_SIZE


M = TypeVar("M")


class _Framing(Generic[M]):
    """The framing both decoders share: their buffer, preludes, CRCs and limits (see
    :class:`Decoder`); what one message becomes is the subclass's ``_message``."""

    __slots__ = ("_buf", "_end", "_start", "_then", "_view", "_want", "max_message_len")

    def __init__(
        self, max_message_len: int = MAX_MESSAGE_LEN, first_message_len: int | None = None
    ) -> None:
        self._buf = bytearray(READ_SIZE)
        self._view = memoryview(self._buf)
        self._start = self._end = 0  # the bytes not decoded yet: _buf[_start:_end]
        self._want = 0  # the length of the message that is coming in, once its prelude is
        self.max_message_len = max_message_len
        self._then = 0  # the limit after the first message, while the first one's applies
        if first_message_len is not None and first_message_len < max_message_len:
            self.max_message_len, self._then = first_message_len, max_message_len

    def _message(self, block: memoryview, payload: memoryview) -> M:
        raise NotImplementedError

    def feed(self, data: bytes | bytearray | memoryview) -> list[M]:
        n = len(data)
        self.get_buffer(n)[:n] = data
        return self.buffer_updated(n)

    def get_buffer(self, sizehint: int = -1) -> memoryview:
        """Where the next bytes go: at least ``sizehint`` bytes (or a read's worth) of room."""
        start, end = self._start, self._end
        if start == end and sizehint <= len(self._buf) <= _KEEP_BUFFER:
            self._start = self._end = 0
            return self._view  # all decoded (the usual case): the whole buffer
        pending = end - start
        if not pending and (start or len(self._buf) > _KEEP_BUFFER):
            start = end = self._start = self._end = 0
            if len(self._buf) > _KEEP_BUFFER:
                self._buf = bytearray(READ_SIZE)
                self._view = memoryview(self._buf)
        need = max(sizehint, READ_SIZE, self._want - pending)
        if len(self._buf) - end < need:
            if len(self._buf) - pending >= need:  # room enough once the rest moves to the front
                self._view[:pending] = self._view[start:end]
            else:
                grown = bytearray(max(2 * len(self._buf), pending + need))
                grown[:pending] = self._view[start:end]
                self._buf, self._view = grown, memoryview(grown)
            self._start, self._end = 0, pending
            end = pending
        return self._view[end:]

    def buffer_updated(self, nbytes: int) -> list[M]:
        """``nbytes`` more were written where :meth:`get_buffer` said: the messages now whole."""
        self._end += nbytes
        out: list[M] = []
        buf, view = self._buf, self._view
        pos, end = self._start, self._end
        self._want = 0
        try:
            while end - pos >= PRELUDE_LEN:
                total, hlen, pcrc = _PRELUDE.unpack_from(buf, pos)
                if zlib.crc32(view[pos : pos + 8]) != pcrc:
                    raise FrameError("prelude CRC mismatch")
                if total < MIN_MESSAGE_LEN or total > self.max_message_len:
                    if self._then and total >= MIN_MESSAGE_LEN:
                        raise FrameError(
                            f"first message length {total} is over the handshake's limit of "
                            f"{self.max_message_len} bytes"
                        )
                    raise FrameError(f"message length {total} out of range")
                if hlen > total - MIN_MESSAGE_LEN:
                    raise FrameError(f"header length {hlen} exceeds message length {total}")
                if end - pos < total:
                    self._want = total
                    break
                last = pos + total - 4
                if zlib.crc32(view[pos:last]) != _U32.unpack_from(buf, last)[0]:
                    raise FrameError("message CRC mismatch")
                hstart = pos + PRELUDE_LEN
                out.append(self._message(view[hstart : hstart + hlen], view[hstart + hlen : last]))
                pos += total
                if self._then:
                    self.max_message_len, self._then = self._then, 0
        finally:
            self._start = pos
        return out

    def discard(self) -> None:
        """Drop what is buffered (a connection that reads and drops until it closes)."""
        self._start = self._end = self._want = 0


class Decoder(_Framing[Message]):
    """Incremental decoder: bytes in, whole messages out; :class:`FrameError` on corruption.

    Bytes come in either by :meth:`feed` or read straight into the decoder's own buffer
    (:meth:`get_buffer`, then :meth:`buffer_updated`: what ``asyncio.BufferedProtocol`` does),
    so a connection reads into one buffer that lives as long as it does.

    ``first_message_len``: a tighter limit for the first message only (the handshake's); a
    message over it is refused from its prelude alone, before any of its body is buffered, and
    ``max_message_len`` applies from the second message on. After an error the framing is lost;
    the caller must drop the connection.
    """

    __slots__ = ()

    def _message(self, block: memoryview, payload: memoryview) -> Message:
        return Message(decode_headers(block), bytes(payload))


def encode_header_block(headers: list[Header]) -> bytes:
    """Pre-encode a header block, for messages sent many times with the same headers."""
    out = bytearray()
    for h in headers:
        _encode_header(h, out)
    return bytes(out)


def encode_raw(header_block: bytes, payload: bytes) -> bytes:
    """Encode a message from a pre-encoded header block (the hot path of event delivery)."""
    total = PRELUDE_LEN + len(header_block) + len(payload) + TRAILER_LEN
    if total > MAX_MESSAGE_LEN:
        raise FrameError(f"message too large ({total} bytes)")
    prelude = _PRELUDE_HEAD.pack(total, len(header_block))
    head = prelude + _U32.pack(zlib.crc32(prelude))
    crc = zlib.crc32(payload, zlib.crc32(header_block, zlib.crc32(head)))
    return b"".join((head, header_block, payload, _U32.pack(crc)))


_PRELUDE_HEAD = struct.Struct(">II")


# --- the event-stream RPC headers (shared/IPC_PROTOCOL.md section 3) ---------------------------
MESSAGE_TYPE: Final = ":message-type"
MESSAGE_FLAGS: Final = ":message-flags"
STREAM_ID: Final = ":stream-id"
CONTENT_TYPE: Final = ":content-type"
MODEL_TYPE: Final = "service-model-type"
OPERATION: Final = "operation"
VERSION: Final = ":version"
_WANTED = frozenset({MESSAGE_TYPE, MESSAGE_FLAGS, STREAM_ID, OPERATION, VERSION})


class RpcMessage(NamedTuple):
    """One received message as the RPC layer sees it: its three mandatory int32 headers, the
    ``operation`` header when it is a string, ``:version`` as sent, and the message itself."""

    type: int
    flags: int
    stream_id: int
    operation: str | None
    version: HeaderValue | None
    headers: list[Header]
    payload: bytes


def read_rpc(msg: Message) -> RpcMessage:
    """The RPC view of ``msg`` (header names compare case-insensitively, first one wins).

    :class:`ProtocolError` when one of the three RPC headers is missing or not int32 (an int64
    ``:message-type`` is as fatal as a missing one), checked in the order type, flags, stream id.
    """
    found: dict[str, Header] = {}
    for h in msg.headers:
        name = h.name
        if name not in _WANTED:
            name = name.lower()
            if name not in _WANTED:
                continue
        if name not in found:
            found[name] = h
    op = found.get(OPERATION)
    version = found.get(VERSION)
    return RpcMessage(
        _int32(found, MESSAGE_TYPE),  # arguments run left to right: the order of the checks
        _int32(found, MESSAGE_FLAGS),
        _int32(found, STREAM_ID),
        op.value if op is not None and isinstance(op.value, str) else None,
        version.value if version is not None else None,
        msg.headers,
        msg.payload,
    )


def _int32(found: dict[str, Header], name: str) -> int:
    h = found.get(name)
    if h is None:
        raise ProtocolError(f"missing {name} header")
    if h.type != T_INT32:
        raise ProtocolError(f"{name} header must be int32")
    assert isinstance(h.value, int)
    return h.value


class RpcDecoder(_Framing[RpcMessage]):
    """A :class:`Decoder` whose messages come out as :func:`read_rpc` reads them.

    It keeps the last header block it decoded: a client sends the requests of one operation
    with the same headers but for the ``:stream-id`` value, and a block that differs from the
    last one in those four bytes only is not decoded again (decoding does not depend on an
    int32's value, so it would come out the same but for that value).
    """

    __slots__ = ("_last_block", "_last_rpc", "_sid_at", "_sid_index")

    def __init__(
        self, max_message_len: int = MAX_MESSAGE_LEN, first_message_len: int | None = None
    ) -> None:
        super().__init__(max_message_len, first_message_len)
        self._last_block = b""
        self._last_rpc: RpcMessage | None = None
        self._sid_at = -1  # where the stream id's value is in _last_block (-1: nowhere)
        self._sid_index = -1  # and which header of _last_rpc.headers it is

    def _message(self, block: memoryview, payload: memoryview) -> RpcMessage:
        raw = bytes(block)
        last, at = self._last_rpc, self._sid_at
        if (
            last is not None
            and at >= 0
            and len(raw) == len(self._last_block)
            and raw[:at] == self._last_block[:at]
            and raw[at + 4 :] == self._last_block[at + 4 :]
        ):
            stream_id = _I32.unpack_from(raw, at)[0]
            headers = last.headers.copy()
            headers[self._sid_index] = Header(headers[self._sid_index].name, T_INT32, stream_id)
            return RpcMessage(
                last.type,
                last.flags,
                stream_id,
                last.operation,
                last.version,
                headers,
                bytes(payload),
            )
        headers = decode_headers(raw)
        msg = read_rpc(Message(headers, bytes(payload)))
        self._last_rpc, self._last_block = msg, raw
        self._sid_at = self._sid_index = -1
        at = 0
        for i, h in enumerate(headers):  # the header read_rpc took for the stream id
            at += 2 + len(h.name.encode("utf-8"))
            if h.name.lower() == STREAM_ID:
                self._sid_at, self._sid_index = at, i
                break
            at += _value_len(h)
        return msg


_VALUE_LEN = {T_TRUE: 0, T_FALSE: 0, T_BYTE: 1, T_INT16: 2, T_INT32: 4, T_INT64: 8}
_VALUE_LEN |= {T_TIMESTAMP: 8, T_UUID: 16}


def _value_len(h: Header) -> int:
    """How many bytes the value of a decoded header took on the wire."""
    if h.type in (T_STRING, T_BYTES):
        v = h.value
        return 2 + len(v.encode("utf-8") if isinstance(v, str) else v)  # type: ignore[arg-type]
    return _VALUE_LEN[h.type]


def _int32_prefix(name: str) -> bytes:
    return encode_header_block([int32(name, 0)])[:-4]


_RPC_NAMES = tuple(_int32_prefix(n) for n in (MESSAGE_TYPE, MESSAGE_FLAGS, STREAM_ID))
_RPC_BLOCK = struct.Struct(">" + "".join(f"{len(p)}si" for p in _RPC_NAMES))


@functools.lru_cache(maxsize=512)
def _rpc_tail(content_type: str | None, model: str | None) -> bytes:
    """The encoded ``:content-type`` and ``service-model-type`` headers (those given)."""
    headers = [] if content_type is None else [string(CONTENT_TYPE, content_type)]
    if model is not None:
        headers.append(string(MODEL_TYPE, model))
    return encode_header_block(headers)


def rpc_head(
    msg_type: int,
    flags: int,
    stream_id: int,
    *,
    content_type: str | None = None,
    model: str | None = None,
    headers: Sequence[Header] = (),
) -> bytes:
    """The encoded header block of an RPC message: the three int32 headers (one struct pack),
    then ``:content-type`` and ``service-model-type`` when given, then ``headers``."""
    a, b, c = _RPC_NAMES
    head = _RPC_BLOCK.pack(a, msg_type, b, flags, c, stream_id)
    if content_type is not None or model is not None:
        head += _rpc_tail(content_type, model)
    if headers:
        head += encode_header_block(list(headers))
    return head


def encode_rpc(
    msg_type: int,
    flags: int,
    stream_id: int,
    payload: bytes = b"",
    *,
    content_type: str | None = None,
    model: str | None = None,
    headers: Sequence[Header] = (),
) -> bytes:
    """Encode one RPC message (see :func:`rpc_head`); a head sent many times goes to
    :func:`encode_raw` instead."""
    head = rpc_head(
        msg_type, flags, stream_id, content_type=content_type, model=model, headers=headers
    )
    return encode_raw(head, payload)
