"""Event-stream RPC, server side: one :class:`Connection` per client socket.

Handshake (CONNECT -> CONNECT_ACK), ping, stream-id bookkeeping and the send helpers for
responses, events and modeled errors. Operations are dispatched to the core
(:meth:`ggvision.core.server.IpcCore.dispatch`). See ``shared/IPC_PROTOCOL.md`` sections 3-4.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import struct
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from ggvision.core import codec
from ggvision.core.codec import Header, Message
from ggvision.errors import FrameError, IpcError, ProtocolError

if TYPE_CHECKING:
    from ggvision.core.server import IpcCore

log = logging.getLogger(__name__)

# Message types.
APPLICATION_MESSAGE: Final = 0
APPLICATION_ERROR: Final = 1
PING: Final = 2
PING_RESPONSE: Final = 3
CONNECT: Final = 4
CONNECT_ACK: Final = 5
PROTOCOL_ERROR: Final = 6
INTERNAL_ERROR: Final = 7
# Flags.
CONNECTION_ACCEPTED: Final = 1
TERMINATE_STREAM: Final = 2

JSON: Final = "application/json"
SERVICE: Final = "aws.greengrass#GreengrassCoreIPC"
PROTOCOL_VERSION: Final = "0.1.0"
# A subscriber that stops reading is cut off once this much is queued for it.
MAX_WRITE_BUFFER: Final = 64 * 1024 * 1024


def _rpc_headers(msg_type: int, flags: int, stream_id: int) -> list[Header]:
    return [
        codec.int32(":message-type", msg_type),
        codec.int32(":message-flags", flags),
        codec.int32(":stream-id", stream_id),
    ]


def _int32_prefix(name: str) -> bytes:
    return codec.encode_header_block([codec.int32(name, 0)])[:-4]


_RPC_NAMES = tuple(_int32_prefix(n) for n in (":message-type", ":message-flags", ":stream-id"))
_RPC_BLOCK = struct.Struct(">" + "".join(f"{len(p)}si" for p in _RPC_NAMES))


def _rpc_block(msg_type: int, flags: int, stream_id: int) -> bytes:
    """The encoded three RPC headers (hot path: one struct pack instead of the generic encoder)."""
    a, b, c = _RPC_NAMES
    return _RPC_BLOCK.pack(a, msg_type, b, flags, c, stream_id)


@functools.lru_cache(maxsize=512)
def _json_tail(model: str) -> bytes:
    """The encoded ``:content-type`` and ``service-model-type`` headers of a model."""
    return codec.encode_header_block(
        [codec.string(":content-type", JSON), codec.string("service-model-type", model)]
    )


class _Batch(threading.local):
    """Connections written to while the current thread's loop handles one ``data_received``.

    Their queued frames go out together when it returns: a burst of requests costs one
    ``send()`` per client instead of one per message, and a lone request pays nothing extra.
    """

    dirty: list[Connection] | None = None


_batch = _Batch()


def error_payload(err: IpcError) -> bytes:
    body: dict[str, Any] = {
        "_service": SERVICE,
        "_message": err.message,
        "_errorCode": err.name,
        "message": err.message,
    }
    body.update(err.fields)
    return json.dumps(body).encode()


def _int32_header(msg: Message, name: str) -> int:
    """The value of a mandatory int32 RPC header (``name`` lower-case); ProtocolError otherwise."""
    for h in msg.headers:
        if h.name.lower() == name:
            if h.type != codec.T_INT32:
                raise ProtocolError(f"{name} header must be int32")
            assert isinstance(h.value, int)
            return h.value
    raise ProtocolError(f"missing {name} header")


class Stream:
    """One operation stream opened by the client."""

    __slots__ = ("_event_head", "_on_close", "conn", "id", "is_open", "operation")

    def __init__(self, conn: Connection, stream_id: int, operation: str) -> None:
        self.conn = conn
        self.id = stream_id
        self.operation = operation
        self.is_open = True
        self._on_close: list[Callable[[], None]] = []
        self._event_head: bytes | None = None

    def on_close(self, fn: Callable[[], None]) -> None:
        self._on_close.append(fn)

    def _closed(self) -> None:
        if not self.is_open:
            return
        self.is_open = False
        self.conn.streams.pop(self.id, None)
        callbacks, self._on_close = self._on_close, []
        for fn in callbacks:
            try:
                fn()
            except Exception:
                log.exception("stream close callback failed")

    def respond(self, model: str, body: dict[str, Any], *, terminate: bool) -> None:
        if not self.is_open:
            return
        flags = TERMINATE_STREAM if terminate else 0
        block = _rpc_block(APPLICATION_MESSAGE, flags, self.id) + _json_tail(model)
        self.conn.write(codec.encode_raw(block, json.dumps(body).encode()))
        if terminate:
            self._closed()

    def send_event_bytes(self, model: str, payload: bytes) -> None:
        """Send one event on a streaming operation (header block cached per stream)."""
        if not self.is_open:
            return
        if self._event_head is None:
            self._event_head = _rpc_block(APPLICATION_MESSAGE, 0, self.id) + _json_tail(model)
        self.conn.write(codec.encode_raw(self._event_head, payload))

    def send_error(self, err: IpcError) -> None:
        if not self.is_open:
            return
        block = _rpc_block(APPLICATION_ERROR, TERMINATE_STREAM, self.id)
        block += _json_tail(f"aws.greengrass#{err.name}")
        self.conn.write(codec.encode_raw(block, error_payload(err)))
        self._closed()

    def terminate(self) -> None:
        """Close the stream from the server side (empty TERMINATE message)."""
        if not self.is_open:
            return
        self.conn.write(codec.encode(_rpc_headers(APPLICATION_MESSAGE, TERMINATE_STREAM, self.id)))
        self._closed()


class Connection(asyncio.Protocol):
    """One client connection; single-threaded on the core's event loop."""

    def __init__(self, core: IpcCore) -> None:
        self.core = core
        self.transport: asyncio.Transport | None = None
        self.decoder = codec.Decoder()
        self.component: str | None = None
        self.highest_stream = 0
        self.streams: dict[int, Stream] = {}
        self.closed = False
        self._refused = False
        self._out: list[bytes] = []  # frames held back until the current batch ends

    # --- asyncio.Protocol ---------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.core.connections.add(self)

    def data_received(self, data: bytes) -> None:
        if _batch.dirty is not None:  # nested (cannot happen on one loop); no batching
            self._receive(data)
            return
        _batch.dirty = []
        try:
            self._receive(data)
        finally:
            dirty, _batch.dirty = _batch.dirty, None
            for conn in dirty:
                conn._flush()

    def _receive(self, data: bytes) -> None:
        try:
            messages = self.decoder.feed(data)
            for msg in messages:
                if self.closed:
                    return
                self._handle(msg)
        except (FrameError, ProtocolError) as exc:
            log.warning(
                "closing IPC connection: %s",
                exc,
                extra={"event": "ipc.protocol_error", "component": self.component},
            )
            self._protocol_error(str(exc))
        except Exception as exc:  # boundary: one bad connection never takes the core down
            log.exception("internal error on IPC connection", extra={"event": "ipc.internal_error"})
            self._fatal(INTERNAL_ERROR, f"internal error: {type(exc).__name__}")

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.core.connections.discard(self)
        for stream in list(self.streams.values()):
            stream._closed()
        self.streams.clear()
        if self.component is not None:
            log.debug(
                "component disconnected",
                extra={"event": "ipc.disconnect", "component": self.component},
            )

    # --- writes ----------------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        if self.closed or self.transport is None:
            return
        self._out.append(data)
        if len(self._out) == 1:
            dirty = _batch.dirty
            if dirty is None:
                self._flush()  # not inside a batch (async handler, timer): send now
            else:
                dirty.append(self)

    def _flush(self) -> None:
        out, self._out = self._out, []
        t = self.transport
        if not out or t is None or self.closed or t.is_closing():
            return
        t.write(out[0] if len(out) == 1 else b"".join(out))
        if t.get_write_buffer_size() > MAX_WRITE_BUFFER:
            log.error(
                "IPC client is not reading; closing its connection",
                extra={"event": "ipc.slow_consumer", "component": self.component},
            )
            self.close()

    def close(self) -> None:
        if self.closed:
            return
        self._flush()
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _fatal(self, msg_type: int, text: str) -> None:
        if self.transport is not None and not self.closed:
            self._flush()  # what was already answered goes out first
            headers = [*_rpc_headers(msg_type, 0, 0), codec.string(":content-type", JSON)]
            self.transport.write(codec.encode(headers, json.dumps({"message": text}).encode()))
        self.close()

    def _protocol_error(self, text: str) -> None:
        self._fatal(PROTOCOL_ERROR, text)

    # --- message handling ----------------------------------------------------------------------
    def _handle(self, msg: Message) -> None:
        # All three must be present and int32 (an int64 :message-type is as fatal as a missing one).
        msg_type = _int32_header(msg, ":message-type")
        flags = _int32_header(msg, ":message-flags")
        stream_id = _int32_header(msg, ":stream-id")

        if self._refused:
            return
        if self.component is None:
            if msg_type != CONNECT or stream_id != 0:
                raise ProtocolError("expected CONNECT before anything else")
            self._connect(msg)
            return
        if stream_id == 0:
            if msg_type == PING:
                headers = _rpc_headers(PING_RESPONSE, 0, 0)
                headers += [h for h in msg.headers if not h.name.startswith(":")]
                self.write(codec.encode(headers, msg.payload))
            elif msg_type == PING_RESPONSE:
                pass
            elif msg_type == CONNECT:
                raise ProtocolError("CONNECT sent twice")
            else:
                raise ProtocolError(f"message type {msg_type} not allowed on stream 0")
            return
        if msg_type not in (APPLICATION_MESSAGE, APPLICATION_ERROR):
            raise ProtocolError(f"message type {msg_type} not allowed on stream {stream_id}")
        if stream_id <= self.highest_stream:
            stream = self.streams.get(stream_id)
            if flags & TERMINATE_STREAM:
                if stream is not None:
                    stream._closed()  # client closed it: drop subscriptions, send nothing
                return
            if stream is None:
                raise ProtocolError(f"message on closed stream {stream_id}")
            return  # no Greengrass operation has client-side stream events
        if stream_id != self.highest_stream + 1:
            raise ProtocolError(f"stream id {stream_id} skips ahead of {self.highest_stream}")
        operation = msg.get("operation")
        if not isinstance(operation, str) or not operation:
            raise ProtocolError("a new stream needs an operation header")
        self.highest_stream = stream_id
        if flags & TERMINATE_STREAM:
            return  # opened and closed in one frame: the Java server does not run it
        stream = Stream(self, stream_id, operation)
        self.streams[stream_id] = stream
        self.core.dispatch(stream, msg.payload)

    def _connect(self, msg: Message) -> None:
        version = msg.get(":version")
        token: object = None
        try:
            token = json.loads(msg.payload).get("authToken")
        except (ValueError, AttributeError, RecursionError):  # hostile JSON: refuse
            token = None
        component = self.core.component_for_token(token) if isinstance(token, str) else None
        accepted = version == PROTOCOL_VERSION and component is not None
        flags = CONNECTION_ACCEPTED if accepted else 0
        if self.transport is not None:
            self.transport.write(codec.encode(_rpc_headers(CONNECT_ACK, flags, 0)))
        if not accepted:
            log.warning(
                "IPC connection refused: %s",
                "bad protocol version" if version != PROTOCOL_VERSION else "unknown token",
                extra={"event": "ipc.refused"},
            )
            # Let the client read the rejection before the socket goes away; closing at once
            # makes the CRT report a bare "socket closed" instead of AccessDeniedError.
            asyncio.get_running_loop().call_later(0.2, self.close)
            self.component = None
            self._refused = True
            return
        self.component = component
        log.debug("component connected", extra={"event": "ipc.connect", "component": component})
