"""Cameras sharing one classifier, as one real ``GreengrassCoreIPCClientV2`` process: a flooding
camera publishes its whole burst at once, as fast as the client allows, while a slow camera sends
one frame at a time and waits for its answer before the next; both by frame reference, each
request with its camera's ``source``. Optionally it then waits for a status report of the
classifier on ``status_topic`` whose figures of the slow camera count all its answers.

Run with the Nucleus environment: ``python -m tests.classifier.cameras_client SPEC_JSON``; SPEC:
``{"reply_topic", "timeout_s", "fast": {"source", "count", "frame"}, "slow": {"source", "count",
"frame"}, "status_topic"?}`` (``frame``: a frame reference). Prints one JSON line: per camera
its answers' codes, error messages, ids answered twice and never answered; and the status seen.
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
    cams = {"fast": spec["fast"], "slow": spec["slow"]}
    client = GreengrassCoreIPCClientV2()
    lock = threading.Lock()
    answers: dict[str, list[dict[str, Any]]] = {}
    answered = threading.Condition(lock)
    statuses: list[dict[str, Any]] = []

    def on_reply(event: Any) -> None:
        msg = json.loads(event.binary_message.message)
        with answered:
            answers.setdefault(str(msg.get("id")), []).append(msg)
            answered.notify_all()

    def on_status(event: Any) -> None:
        with answered:
            statuses.append(json.loads(event.binary_message.message))
            answered.notify_all()

    client.subscribe_to_topic(topic=reply_topic, on_stream_event=on_reply)
    if spec.get("status_topic"):
        client.subscribe_to_topic(topic=spec["status_topic"], on_stream_event=on_status)

    def publish(name: str, i: int) -> Any:
        cam = cams[name]
        body = {
            "id": f"{name}-{i}",
            "image": {"frame": cam["frame"]},
            "source": cam["source"],
            "reply_topic": reply_topic,
        }
        message = PublishMessage(binary_message=BinaryMessage(message=json.dumps(body).encode()))
        return client.publish_to_topic_async(topic="local/inference", publish_message=message)

    def flood() -> None:
        futures = [publish("fast", i) for i in range(cams["fast"]["count"])]
        for f in futures:
            f.result(timeout_s)

    flooder = threading.Thread(target=flood)
    flooder.start()
    deadline = time.monotonic() + timeout_s
    for i in range(cams["slow"]["count"]):
        publish("slow", i).result(timeout_s)
        with answered:
            answered.wait_for(lambda i=i: f"slow-{i}" in answers, deadline - time.monotonic())
    flooder.join(timeout_s)
    every = [f"{name}-{i}" for name, cam in cams.items() for i in range(cam["count"])]
    with answered:
        answered.wait_for(lambda: all(r in answers for r in every), deadline - time.monotonic())
    seen: dict[str, Any] | None = None
    if spec.get("status_topic"):
        slow, count = cams["slow"]["source"], cams["slow"]["count"]

        def counted() -> dict[str, Any] | None:
            for status in reversed(statuses):
                figures = status.get("sources", {}).get(slow)
                if figures and figures["ok"] + figures["errors"] + figures["dropped"] >= count:
                    return status
            return None

        with answered:
            answered.wait_for(lambda: counted() is not None, deadline - time.monotonic())
            seen = counted()
    time.sleep(0.5)  # a late second answer would arrive now
    client.close()
    out: dict[str, Any] = {"status": seen}
    with lock:
        for name, cam in cams.items():
            rids = [f"{name}-{i}" for i in range(cam["count"])]
            codes: dict[str, int] = {}
            messages: set[str] = set()
            for rid in rids:
                for msg in answers.get(rid, [])[:1]:
                    code = "ok" if msg.get("status") == "ok" else msg["error"]["code"]
                    codes[code] = codes.get(code, 0) + 1
                    if code != "ok":
                        messages.add(msg["error"]["message"])
                    if msg.get("source") != cam["source"]:
                        codes["wrong source"] = codes.get("wrong source", 0) + 1
            out[name] = {
                "codes": codes,
                "messages": sorted(messages)[:20],
                "duplicates": [r for r in rids if len(answers.get(r, [])) > 1],
                "missing": [r for r in rids if r not in answers][:20],
            }
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
