"""One requester of the load test: a real ``GreengrassCoreIPCClientV2`` that publishes a burst of
requests as fast as the client allows and collects the replies on its own reply topic.

Run with the Nucleus environment: ``python -m tests.reliability.burst_client PREFIX COUNT PATH
REPLY_TOPIC [TIMEOUT_S]``. Prints one JSON line: counts by status/code, a few error messages,
ids answered twice, ids never answered, and the latency (publish -> reply) of every reply in ms.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any


def main(argv: list[str]) -> int:
    from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2
    from awsiot.greengrasscoreipc.model import BinaryMessage, PublishMessage

    prefix, count, path, reply_topic = argv[0], int(argv[1]), argv[2], argv[3]
    timeout_s = float(argv[4]) if len(argv) > 4 else 120.0
    client = GreengrassCoreIPCClientV2()
    sent: dict[str, float] = {}
    replies: dict[str, int] = {}
    latency: list[float] = []
    codes: dict[str, int] = {}
    messages: set[str] = set()  # of the error answers
    foreign = 0
    lock = threading.Lock()
    done = threading.Event()

    def on_event(event: Any) -> None:
        nonlocal foreign
        now = time.monotonic()
        msg = json.loads(event.binary_message.message)
        rid = msg.get("id", "")
        code = "ok" if msg.get("status") == "ok" else msg.get("error", {}).get("code", "?")
        with lock:
            if rid not in sent:
                foreign += 1
                return
            replies[rid] = replies.get(rid, 0) + 1
            codes[code] = codes.get(code, 0) + 1
            if code != "ok" and len(messages) < 20:
                messages.add(str(msg.get("error", {}).get("message", "")))
            latency.append((now - sent[rid]) * 1000)
            if len(replies) == count:
                done.set()

    client.subscribe_to_topic(topic=reply_topic, on_stream_event=on_event)
    futures = []
    started = time.monotonic()
    for i in range(count):
        rid = f"{prefix}-{i}"
        body = {"id": rid, "image": {"path": path}, "reply_topic": reply_topic}
        with lock:
            sent[rid] = time.monotonic()
        message = PublishMessage(binary_message=BinaryMessage(message=json.dumps(body).encode()))
        futures.append(
            client.publish_to_topic_async(topic="local/inference", publish_message=message)
        )
    publish_errors = sum(1 for f in futures if f.exception(timeout_s) is not None)
    done.wait(timeout_s)
    time.sleep(0.5)  # a late second reply would arrive now
    elapsed = time.monotonic() - started
    client.close()
    with lock:
        out = {
            "prefix": prefix,
            "sent": count,
            "publish_errors": publish_errors,
            "answered": len(replies),
            "duplicates": sorted(r for r, n in replies.items() if n > 1),
            "missing": sorted(r for r in sent if r not in replies)[:20],
            "codes": codes,
            "error_messages": sorted(messages),
            "foreign": foreign,
            "latency_ms": latency,
            "elapsed_s": elapsed,
        }
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
