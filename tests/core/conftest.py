"""Fixtures for the core's protocol tests: a raw event-stream client that can say anything."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from ggvision.core import codec, rpc
from ggvision.core.codec import Header, Message


class RawClient:
    """A bare Unix-socket event-stream client: no CRT, no rules, byte-level control."""

    def __init__(self, path: str | Path, timeout: float = 5.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(str(path))
        self.decoder = codec.Decoder()
        self.inbox: list[Message] = []
        self.eof = False
        self.next_stream = 1

    # --- sending ---------------------------------------------------------------------------
    def send_bytes(self, data: bytes) -> bool:
        """Send raw bytes; False when the core has already hung up."""
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            return False
        return True

    def send(
        self,
        msg_type: int,
        flags: int = 0,
        stream_id: int = 0,
        headers: list[Header] | None = None,
        payload: bytes = b"",
    ) -> bool:
        base = [
            codec.int32(":message-type", msg_type),
            codec.int32(":message-flags", flags),
            codec.int32(":stream-id", stream_id),
        ]
        return self.send_bytes(codec.encode(base + (headers or []), payload))

    def send_connect(self, token: str | None, version: str | None = rpc.PROTOCOL_VERSION) -> None:
        headers = [codec.string(":version", version)] if version is not None else []
        payload = json.dumps({"authToken": token}).encode() if token is not None else b""
        self.send(rpc.CONNECT, headers=headers, payload=payload)

    # --- receiving -------------------------------------------------------------------------
    def recv(self, timeout: float = 5.0) -> Message | None:
        """Next message, or None once the core closed the connection. Fails on timeout."""
        deadline = time.monotonic() + timeout
        while not self.inbox:
            if self.eof:
                return None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                pytest.fail(f"no message from the core within {timeout} s")
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except ConnectionResetError:  # Linux: peer closed with our bytes still unread
                data = b""
            if not data:
                self.eof = True
            else:
                self.inbox += self.decoder.feed(data)
        return self.inbox.pop(0)

    def expect(self, timeout: float = 5.0) -> Message:
        """Next message; fails if the core closed the connection instead."""
        msg = self.recv(timeout)
        if msg is None:
            pytest.fail("the core closed the connection")
        return msg

    def until_closed(self, timeout: float = 5.0) -> list[Message]:
        """Everything the core sends until it closes the connection; fails if it never does."""
        deadline = time.monotonic() + timeout
        out: list[Message] = []
        while (msg := self.recv(max(0.01, deadline - time.monotonic()))) is not None:
            out.append(msg)
        return out

    # --- the normal conversation -----------------------------------------------------------
    def handshake(self, token: str) -> None:
        self.send_connect(token)
        ack = self.expect()
        assert ack.get(":message-type") == rpc.CONNECT_ACK
        assert ack.get(":message-flags") == rpc.CONNECTION_ACCEPTED

    def open_stream(self, operation: str, body: Any, *, flags: int = 0) -> int:
        sid = self.next_stream
        self.next_stream += 1
        payload = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers = [
            codec.string(":content-type", rpc.JSON),
            codec.string("service-model-type", operation + "Request"),
            codec.string("operation", operation),
        ]
        self.send(rpc.APPLICATION_MESSAGE, flags, sid, headers, payload)
        return sid

    def call(self, operation: str, body: Any) -> Message:
        """Open a stream and return the first message the core sends on it."""
        sid = self.open_stream(operation, body)
        msg = self.expect()
        assert msg.get(":stream-id") == sid
        return msg

    def close(self) -> None:
        self.sock.close()


def kinds(messages: list[Message]) -> list[tuple[object, object, object]]:
    """``(message type, flags, stream id)`` of each message, for compact assertions."""
    return [
        (m.get(":message-type"), m.get(":message-flags"), m.get(":stream-id")) for m in messages
    ]


PROTOCOL_ERROR_ON_0 = (rpc.PROTOCOL_ERROR, 0, 0)
