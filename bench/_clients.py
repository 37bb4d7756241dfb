"""The benchmark's client processes: ``python -m bench._clients ROLE ARG``.

* ``publisher ACK_FD`` / ``subscriber ACK_FD``: a real ``GreengrassCoreIPCClientV2`` each (Nucleus
  environment from the parent). The subscriber writes one byte to the ack pipe per latency-phase
  event and one when a throughput phase is complete; the publisher waits on the other end.
* ``echo SOCKET_PATH``: the baseline, a Unix-socket echo server (plain ``recv``/``sendall``).

Each reads JSON commands from stdin and answers one JSON line on stdout. Timestamps are
``time.monotonic_ns()`` (CLOCK_MONOTONIC, one clock for every process on Linux).
"""

from __future__ import annotations

import json
import os
import select
import socket
import struct
import sys
import threading
import time
from typing import Any

TOPIC = "bench/ipc"
PAYLOAD_SIZE = 200
# phase, sequence number, messages in this phase, send time.
HEAD = struct.Struct(">BIIQ")
WARM, LATENCY, THROUGHPUT = 0, 1, 2
ACK_ONE, ACK_ALL = b"L", b"T"


def _reply(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def _commands() -> Any:
    for line in sys.stdin:
        if line.strip():
            yield json.loads(line)


def payload(phase: int, seq: int, total: int, filler: bytes) -> bytes:
    return HEAD.pack(phase, seq, total, time.monotonic_ns()) + filler


def _wait_ack(fd: int, expected: bytes, timeout: float = 10.0) -> None:
    ready, _, _ = select.select([fd], [], [], timeout)
    if not ready:
        raise TimeoutError(f"no {expected!r} ack within {timeout} s (event lost?)")
    got = os.read(fd, 1)
    if got != expected:
        raise RuntimeError(f"ack {got!r}, expected {expected!r}")


# --- subscriber ---------------------------------------------------------------------------------


class _Recorder:
    def __init__(self, ack_fd: int) -> None:
        self.ack_fd = ack_fd
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self.cpu_mark = time.process_time()
        self.latencies_ns: list[int] = []
        self.count = 0
        self.first_ns: int | None = None
        self.last_ns = 0

    def on_event(self, event: Any) -> None:
        now = time.monotonic_ns()
        phase, _seq, total, sent = HEAD.unpack_from(event.binary_message.message)
        with self.lock:
            if phase == THROUGHPUT:
                self.count += 1
                if self.first_ns is None:
                    self.first_ns = now
                self.last_ns = now
                if self.count == total:
                    os.write(self.ack_fd, ACK_ALL)
                return
            if phase == LATENCY:
                self.latencies_ns.append(now - sent)
        os.write(self.ack_fd, ACK_ONE)

    def dump(self) -> dict[str, Any]:
        with self.lock:
            out = {
                "cpu_s": time.process_time() - self.cpu_mark,  # since the last dump
                "latencies_ns": self.latencies_ns,
                "count": self.count,
                "first_ns": self.first_ns,
                "last_ns": self.last_ns,
            }
            self.reset()
        return out


def subscriber(ack_fd: int) -> None:
    from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2

    client = GreengrassCoreIPCClientV2()  # default executor, as components use it
    rec = _Recorder(ack_fd)
    _, operation = client.subscribe_to_topic(topic=TOPIC, on_stream_event=rec.on_event)
    _reply({"ready": True})
    for cmd in _commands():
        if cmd["op"] == "dump":
            _reply(rec.dump())
    operation.close()
    client.close()


# --- publisher ----------------------------------------------------------------------------------


def publisher(ack_fd: int) -> None:
    from awsiot.greengrasscoreipc import model
    from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2

    client = GreengrassCoreIPCClientV2()
    filler = os.urandom(PAYLOAD_SIZE - HEAD.size)

    def message(phase: int, seq: int, total: int) -> Any:
        data = payload(phase, seq, total, filler)
        return model.PublishMessage(binary_message=model.BinaryMessage(message=data))

    _reply({"ready": True})
    for cmd in _commands():
        n = int(cmd["n"])
        cpu_mark = time.process_time()
        if cmd["op"] == "latency":
            # One message in flight: publish, then wait until the subscriber has it.
            req_resp: list[int] = []
            for seq in range(n):
                t0 = time.monotonic_ns()
                client.publish_to_topic(topic=TOPIC, publish_message=message(cmd["phase"], seq, n))
                req_resp.append(time.monotonic_ns() - t0)
                _wait_ack(ack_fd, ACK_ONE)
            _reply({"req_resp_ns": req_resp, "cpu_s": time.process_time() - cpu_mark})
        elif cmd["op"] == "throughput":
            window = threading.BoundedSemaphore(int(cmd["window"]))
            errors: list[str] = []

            def done(
                fut: Any, window: threading.BoundedSemaphore = window, errors: list[str] = errors
            ) -> None:
                if fut.exception() is not None:
                    errors.append(repr(fut.exception()))
                window.release()

            start = time.monotonic_ns()
            for seq in range(n):
                window.acquire()
                msg = message(THROUGHPUT, seq, n)
                client.publish_to_topic_async(topic=TOPIC, publish_message=msg).add_done_callback(
                    done
                )
            _wait_ack(ack_fd, ACK_ALL, timeout=60.0)
            _reply({"start_ns": start, "errors": errors, "cpu_s": time.process_time() - cpu_mark})
    client.close()


# --- baseline: raw Unix-socket echo ---------------------------------------------------------------


def echo(path: str) -> None:
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)
    _reply({"ready": True})
    while True:
        conn, _ = srv.accept()
        received = 0
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data)
                received += len(data)
        if received == 0:  # the parent's "we are done" connection
            break
        _reply({"cpu_s": time.process_time(), "messages": received // PAYLOAD_SIZE})
    srv.close()


def main() -> None:
    role, arg = sys.argv[1], sys.argv[2]
    if role == "subscriber":
        subscriber(int(arg))
    elif role == "publisher":
        publisher(int(arg))
    elif role == "echo":
        echo(arg)
    else:
        raise SystemExit(f"unknown role {role}")


if __name__ == "__main__":
    main()
