"""A misbehaving classifier for the requester's tests: a real-client component process.

    python -m tests.requester.fake_classifier MODE --log FILE

answers requests on ``local/inference`` with a fixed "tabby" result on ``local/result`` (mode
``ok``), except:

- ``flaky``: ignores the first attempt of each id (answers the second);
- ``silent``: never answers;
- ``overloaded``: answers the first attempt of each id with ``OVERLOADED``;
- ``duplicate``: answers every request twice, the second time 0.3 s later.

Every request received is logged to FILE as ``{"id", "t"}`` (``time.monotonic()``; the same
clock in every process of the machine). It reports RUNNING once subscribed and stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import signal
import threading
import time
from collections import Counter
from typing import Any

from ggvision.bus import IpcBus
from ggvision.contract import ErrorCode, decode_payload, error_result, parse_request, result_json

MODES = ("ok", "flaky", "silent", "overloaded", "duplicate")
NAME = "com.test.FakeClassifier"


def ok(rid: str) -> dict[str, Any]:
    return {
        "id": rid,
        "status": "ok",
        "predictions": [{"label": "tabby", "index": 281, "score": 0.9}],
        "model": {"name": "fake", "version": "0", "backend": "fake", "precision": "fp32"},
        "timing_ms": {
            "queue": 0.0,
            "decode": 0.0,
            "preprocess": 0.0,
            "inference": 0.1,
            "total": 0.1,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=MODES)
    parser.add_argument("--log", required=True)
    args = parser.parse_args()
    bus = IpcBus()
    seen: Counter[str] = Counter()
    lock = threading.Lock()
    log = open(args.log, "a", encoding="utf-8")  # noqa: SIM115 - open for the process's life

    def answer(obj: dict[str, Any]) -> None:
        bus.publish_json("local/result", obj)

    def on_request(topic: str, payload: bytes | dict[str, Any]) -> None:
        request = parse_request(decode_payload(payload))
        with lock:
            seen[request.id] += 1
            attempt = seen[request.id]
            log.write(json.dumps({"id": request.id, "t": time.monotonic()}) + "\n")
            log.flush()
        if args.mode == "silent" or (args.mode == "flaky" and attempt == 1):
            return
        if args.mode == "overloaded" and attempt == 1:
            answer(result_json(error_result(request.id, ErrorCode.OVERLOADED, "queue is full")))
            return
        answer(ok(request.id))
        if args.mode == "duplicate":
            threading.Timer(0.3, answer, args=(ok(request.id),)).start()

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    sub = bus.subscribe("local/inference", on_request)
    bus.update_state("RUNNING")
    stop.wait()
    sub.close()
    bus.close()
    log.close()


if __name__ == "__main__":
    main()
