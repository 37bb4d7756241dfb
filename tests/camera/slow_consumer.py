"""A slow stand-in for the classifier, as a real component process:
``python -m tests.camera.slow_consumer DELAY_MS FRAME_DIR`` with the Nucleus environment.

It subscribes to ``local/inference`` with the real ``GreengrassCoreIPCClientV2``, reads each
request's frame from the camera's ring (a stale frame is answered ``IMAGE_NOT_FOUND``, as the
classifier does), waits ``DELAY_MS`` and answers on ``local/result``, one request at a time. It
prints ``{"ready": true}`` once subscribed and, when stdin closes, a summary: the ids received
and answered, and the most requests it ever held unanswered.
"""

from __future__ import annotations

import json
import queue
import sys
import threading
import time
from pathlib import Path
from typing import Any


def main() -> None:
    from awsiot.greengrasscoreipc import model
    from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2

    from ggvision.contract import FrameRef
    from ggvision.frames import FrameReader, StaleFrame

    delay = float(sys.argv[1]) / 1000
    frame_dir = Path(sys.argv[2])
    client = GreengrassCoreIPCClientV2()
    inbox: queue.Queue[dict[str, Any]] = queue.Queue()
    lock = threading.Lock()
    received: list[str] = []
    answered: list[str] = []
    stale: list[str] = []
    peak = 0

    def on_event(event: Any) -> None:
        nonlocal peak
        request = json.loads(event.binary_message.message)
        with lock:
            received.append(request["id"])
            peak = max(peak, len(received) - len(answered))
        inbox.put(request)

    def work() -> None:
        readers: dict[str, FrameReader] = {}
        while True:
            request = inbox.get()
            ref = FrameRef.model_validate(request["image"]["frame"])
            reader = readers.get(ref.ring) or readers.setdefault(
                ref.ring, FrameReader(ref.ring, directory=frame_dir)
            )
            result: dict[str, Any] = {"id": request["id"], "source": request.get("source")}
            try:
                pixels, _ = reader.read(ref)
                time.sleep(delay)
                result |= {
                    "status": "ok",
                    "predictions": [
                        {"label": "mean", "index": 0, "score": float(pixels.mean()) / 255}
                    ],
                }
            except StaleFrame as exc:
                stale.append(request["id"])
                result |= {
                    "status": "error",
                    "error": {"code": "IMAGE_NOT_FOUND", "message": f"stale frame: {exc}"},
                }
            with lock:
                answered.append(request["id"])
            message = model.BinaryMessage(message=json.dumps(result).encode())
            client.publish_to_topic(
                topic="local/result", publish_message=model.PublishMessage(binary_message=message)
            )

    client.subscribe_to_topic(topic="local/inference", on_stream_event=on_event)
    threading.Thread(target=work, daemon=True).start()
    print(json.dumps({"ready": True}), flush=True)
    sys.stdin.read()  # until the test closes stdin
    time.sleep(delay * 2)
    with lock:
        summary = {"received": received, "answered": answered, "stale": stale, "peak": peak}
    print(json.dumps(summary), flush=True)
    client.close()


if __name__ == "__main__":
    main()
