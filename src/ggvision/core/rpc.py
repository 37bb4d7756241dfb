"""Event-stream RPC, server side: one :class:`Connection` per client socket.

Handshake (CONNECT -> CONNECT_ACK), ping, stream-id bookkeeping and the send helpers for
responses, events and modeled errors. A connection knows only the narrow :class:`Dispatcher` it
was made with (token -> component, run an operation, connection bookkeeping), never the core
that composes it. Headers are read and written only through :mod:`ggvision.core.codec`: its
:class:`~ggvision.core.codec.RpcDecoder` reads each message in as
:func:`~ggvision.core.codec.read_rpc` does, and one call encodes each message out. See
``shared/IPC_PROTOCOL.md`` sections 3-4.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Callable
from typing import Any, Final, Protocol, cast

from ggvision.core import codec
from ggvision.core.codec import RpcMessage
from ggvision.core.limits import Limits, OutboundBudget
from ggvision.errors import FrameError, IpcError, ProtocolError, UnmodeledIpcError

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
TEXT: Final = "text/plain"
SERVICE: Final = "aws.greengrass#GreengrassCoreIPC"
PROTOCOL_VERSION: Final = "0.1.0"
# A closing connection whose peer does not read what is still queued is aborted after this.
CLOSE_GRACE_S: Final = 2.0


class Dispatcher(Protocol):
    """What a connection needs from the server it belongs to."""

    def component_for_token(self, token: str) -> str | None:
        """The component a CONNECT's ``authToken`` stands for; None refuses the connection."""
        ...

    def admit(self, component: str) -> bool:
        """Whether ``component`` may open one more connection (it is counted if so)."""
        ...

    def dispatch(self, stream: Stream, payload: bytes) -> None:
        """Run the operation a new stream opened with (``stream.operation``); it answers on it."""
        ...

    def connection_opened(self, conn: Connection) -> None: ...

    def connection_closed(self, conn: Connection) -> None: ...


class _Batch(threading.local):
    """Connections written to while the current thread's loop handles one read (``buffer_updated``).

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
        frame = codec.encode_rpc(
            APPLICATION_MESSAGE,
            flags,
            self.id,
            json.dumps(body).encode() if body else b"{}",  # most responses are empty
            content_type=JSON,
            model=model,
        )
        if self.conn.over_lite(frame, self.operation):
            # Lite cannot encode it: the operation fails with its default ServiceError.
            self.send_error(IpcError("ServiceError", ""))
            return
        self.conn.write(frame)
        if terminate:
            self._closed()

    def send_event_bytes(self, model: str, payload: bytes) -> None:
        """Send one event on a streaming operation (header block cached per stream)."""
        if not self.is_open:
            return
        if self._event_head is None:
            self._event_head = codec.rpc_head(
                APPLICATION_MESSAGE, 0, self.id, content_type=JSON, model=model
            )
        frame = codec.encode_raw(self._event_head, payload)
        if self.conn.over_lite(frame, self.operation):
            return  # Lite: "Failed to send subscription response; skipping."
        self.conn.write(frame)

    def send_error(self, err: IpcError) -> None:
        if not self.is_open:
            return
        if isinstance(err, UnmodeledIpcError):  # the Nucleus's bare text, no model header
            frame = codec.encode_rpc(
                APPLICATION_ERROR, TERMINATE_STREAM, self.id, err.name.encode(), content_type=TEXT
            )
        else:
            frame = codec.encode_rpc(
                APPLICATION_ERROR,
                TERMINATE_STREAM,
                self.id,
                error_payload(err),
                content_type=JSON,
                model=f"aws.greengrass#{err.name}",
            )
        self.conn.write(frame)
        self._closed()

    def terminate(self) -> None:
        """Close the stream from the server side (empty TERMINATE message)."""
        if not self.is_open:
            return
        self.conn.write(codec.encode_rpc(APPLICATION_MESSAGE, TERMINATE_STREAM, self.id))
        self._closed()


class Connection(asyncio.BufferedProtocol):
    """One client connection; single-threaded on the core's event loop.

    The transport reads straight into the connection's decoder (``get_buffer`` /
    ``buffer_updated``): no buffer is made per read.

    Bounded (see :mod:`ggvision.core.limits`): its first message may be a CONNECT's size at
    most, it is dropped if it has not authenticated within the handshake timeout, and what is
    queued for it counts against the outbound budget, which may abort it.
    """

    def __init__(self, dispatcher: Dispatcher, budget: OutboundBudget, limits: Limits) -> None:
        self.dispatcher = dispatcher
        self.budget = budget
        self.limits = limits
        self.transport: asyncio.Transport | None = None
        # Lite: what follows a message's 12-byte prelude may be max_message_bytes at most.
        self.lite_max = None if limits.lite is None else limits.lite.max_message_bytes
        if self.lite_max is None:
            self.decoder = codec.RpcDecoder(first_message_len=limits.max_connect_bytes)
        else:
            most = self.lite_max + codec.PRELUDE_LEN
            self.decoder = codec.RpcDecoder(most, min(most, limits.max_connect_bytes))
        self.component: str | None = None
        self.highest_stream = 0
        self.streams: dict[int, Stream] = {}
        self.closed = False
        self.queued = 0  # the budget's record of what the transport holds for the client
        self._refused = False
        self._out: list[bytes] = []  # frames held back until the current batch ends
        self._timer: asyncio.TimerHandle | None = None  # handshake timeout, then close grace

    # --- asyncio.BufferedProtocol -------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = t = cast(asyncio.Transport, transport)  # uvloop's is no subclass
        # pause_writing() once anything is queued, resume_writing() once it has all gone out:
        # the budget hears of every queue that empties without a write.
        t.set_write_buffer_limits(high=0)
        self._timer = asyncio.get_running_loop().call_later(
            self.limits.handshake_timeout_s, self._handshake_expired
        )
        self.dispatcher.connection_opened(self)

    def resume_writing(self) -> None:
        if self.queued:
            self.budget.update(self, 0)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.decoder.get_buffer(sizehint)

    def buffer_updated(self, nbytes: int) -> None:
        if _batch.dirty is not None:  # nested (cannot happen on one loop); no batching
            self._receive(nbytes)
            return
        _batch.dirty = []
        try:
            self._receive(nbytes)
        finally:
            dirty, _batch.dirty = _batch.dirty, None
            for conn in dirty:
                conn._flush()

    def _receive(self, nbytes: int) -> None:
        if self._refused:
            self.decoder.discard()  # read and dropped until the close: nothing of it is kept
            return
        try:
            try:
                messages = self.decoder.buffer_updated(nbytes)
            except FrameError as exc:
                if self.lite_max is None:
                    raise
                # Lite drops the connection on a message it cannot take, and says nothing.
                log.warning(
                    "closing IPC connection (lite profile): %s",
                    exc,
                    extra={"event": "ipc.lite_message_dropped", "component": self.component},
                )
                self.cut_off()
                return
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
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.budget.forget(self)
        self.dispatcher.connection_closed(self)
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
        size = t.get_write_buffer_size()
        if size != self.queued:
            self.budget.update(self, size)  # may cut this connection (or another) off

    def over_lite(self, frame: bytes, operation: str) -> bool:
        """Whether the lite profile's message size forbids sending ``frame`` (logged)."""
        if self.lite_max is None or len(frame) - codec.PRELUDE_LEN <= self.lite_max:
            return False
        log.warning(
            "IPC message of %d bytes not sent: over the lite profile's %d",
            len(frame),
            self.lite_max,
            extra={
                "event": "ipc.lite_message_dropped",
                "component": self.component,
                "operation": operation,
            },
        )
        return True

    def queued_now(self) -> int:
        t = self.transport
        return 0 if t is None else t.get_write_buffer_size()

    def cut_off(self) -> None:
        """Abort: what is queued for the client is dropped at once (the budget logs why)."""
        self.closed = True
        self._out = []
        if self.transport is not None:
            self.transport.abort()

    def close(self) -> None:
        """Close after what is queued has gone out; a peer that does not take it within
        :data:`CLOSE_GRACE_S` is aborted."""
        if self.closed:
            return
        self._flush()
        self.closed = True
        t = self.transport
        if t is not None:
            t.close()
            if t.get_write_buffer_size():
                if self._timer is not None:
                    self._timer.cancel()
                self._timer = asyncio.get_running_loop().call_later(CLOSE_GRACE_S, t.abort)

    def _handshake_expired(self) -> None:
        self._timer = None
        if self.component is not None or self.closed or self._refused:
            return
        log.warning(
            "IPC connection did not authenticate within %s s; dropping it",
            self.limits.handshake_timeout_s,
            extra={"event": "ipc.handshake_timeout"},
        )
        self.cut_off()

    def _fatal(self, msg_type: int, text: str) -> None:
        if self.transport is not None and not self.closed:
            self._flush()  # what was already answered goes out first
            payload = json.dumps({"message": text}).encode()
            self.transport.write(codec.encode_rpc(msg_type, 0, 0, payload, content_type=JSON))
        self.close()

    def _protocol_error(self, text: str) -> None:
        self._fatal(PROTOCOL_ERROR, text)

    # --- message handling ----------------------------------------------------------------------
    def _handle(self, msg: RpcMessage) -> None:
        msg_type, flags, stream_id = msg.type, msg.flags, msg.stream_id

        if self._refused:
            return
        if self.component is None:
            if msg_type != CONNECT or stream_id != 0:
                raise ProtocolError("expected CONNECT before anything else")
            self._connect(msg)
            return
        if stream_id == 0:
            if msg_type == PING:
                echo = [h for h in msg.headers if not h.name.startswith(":")]
                self.write(codec.encode_rpc(PING_RESPONSE, 0, 0, msg.payload, headers=echo))
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
        operation = msg.operation
        if not operation:
            raise ProtocolError("a new stream needs an operation header")
        self.highest_stream = stream_id
        if flags & TERMINATE_STREAM:
            return  # opened and closed in one frame: the Java server does not run it
        stream = Stream(self, stream_id, operation)
        self.streams[stream_id] = stream
        self.dispatcher.dispatch(stream, msg.payload)

    def _connect(self, msg: RpcMessage) -> None:
        version = msg.version
        token: object = None
        try:
            token = json.loads(msg.payload).get("authToken")
        except (ValueError, AttributeError, RecursionError):  # hostile JSON: refuse
            token = None
        component = self.dispatcher.component_for_token(token) if isinstance(token, str) else None
        reason = None
        if version != PROTOCOL_VERSION:
            reason = "bad protocol version"
        elif component is None:
            reason = "unknown token"
        accepted = reason is None and component is not None and self.dispatcher.admit(component)
        flags = CONNECTION_ACCEPTED if accepted else 0
        if self.transport is not None:
            self.transport.write(codec.encode_rpc(CONNECT_ACK, flags, 0))
        if not accepted:
            if reason is not None:  # the dispatcher logs a refusal of its own
                log.warning("IPC connection refused: %s", reason, extra={"event": "ipc.refused"})
            # Let the client read the rejection before the socket goes away; closing at once
            # makes the CRT report a bare "socket closed" instead of AccessDeniedError.
            asyncio.get_running_loop().call_later(0.2, self.close)
            self.component = None
            self._refused = True
            return
        self.component = component
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        log.debug("component connected", extra={"event": "ipc.connect", "component": component})
