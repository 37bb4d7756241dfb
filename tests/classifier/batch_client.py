"""One real ``GreengrassCoreIPCClientV2`` that publishes a request for each image path at once
(so they wait together) and collects every answer on its reply topic; optionally it then waits
for the next status report on ``status_topic``.

Run with the Nucleus environment: ``python -m tests.classifier.batch_client SPEC_JSON``; SPEC:
``{"reply_topic", "timeout_s", "prefix"?, "paths": [...], "status_topic"?}``. Prints one JSON
line: the first answer of each id (``PREFIX-i`` for ``paths[i]``), ids answered twice, ids never
answered, and the status report seen (or null).
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

    spec = json.loads(argv[0])
    reply_topic, timeout_s = spec["reply_topic"], float(spec["timeout_s"])
    rids = [f"{spec.get('prefix', 'r')}-{i}" for i in range(len(spec["paths"]))]
    client = GreengrassCoreIPCClientV2()
    cond = threading.Condition()
    answers: dict[str, list[dict[str, Any]]] = {}
    statuses: list[dict[str, Any]] = []

    def on_reply(event: Any) -> None:
        msg = json.loads(event.binary_message.message)
        with cond:
            answers.setdefault(str(msg.get("id")), []).append(msg)
            cond.notify_all()

    def on_status(event: Any) -> None:
        with cond:
            statuses.append(json.loads(event.binary_message.message))
            cond.notify_all()

    client.subscribe_to_topic(topic=reply_topic, on_stream_event=on_reply)
    if spec.get("status_topic"):
        client.subscribe_to_topic(topic=spec["status_topic"], on_stream_event=on_status)
    futures = []
    for rid, path in zip(rids, spec["paths"], strict=True):
        body = {"id": rid, "image": {"path": path}, "reply_topic": reply_topic}
        message = PublishMessage(binary_message=BinaryMessage(message=json.dumps(body).encode()))
        futures.append(
            client.publish_to_topic_async(topic="local/inference", publish_message=message)
        )
    for f in futures:
        f.result(timeout_s)
    deadline = time.monotonic() + timeout_s
    with cond:
        cond.wait_for(lambda: all(r in answers for r in rids), timeout_s)
        if spec.get("status_topic"):
            cond.wait_for(lambda: bool(statuses), deadline - time.monotonic())
    time.sleep(0.3)  # a late second answer would arrive now
    client.close()
    with cond:
        out = {
            "answers": {r: answers[r][0] for r in rids if r in answers},
            "duplicates": [r for r in rids if len(answers.get(r, [])) > 1],
            "missing": [r for r in rids if r not in answers],
            "status": statuses[-1] if statuses else None,
        }
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
