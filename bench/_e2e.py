"""The classifier and detector benchmarks' requester: ``python -m bench._e2e IMAGE [TOPIC]``
(TOPIC: where requests go, default ``local/inference``), a component process.

A real ``GreengrassCoreIPCClientV2`` (Nucleus environment from the parent). It subscribes to
``local/result`` first, prints ``{"ready": true}``, then reads commands from stdin:

* ``{"op": "cold"}``: publish a request every 50 ms until the first result arrives (the
  classifier may still be starting); answers the monotonic time of that result, then drains.
* ``{"op": "run", "n": N, "store": DIR, "variant": V, "threads": T}``: N requests one at a time
  (the next one goes when the last one is answered), each right after the same work done here
  in-process with the same model (read + decode + preprocess + inference + top-k; a detector:
  its task's prepare + every output + answer), so both see the same machine load; answers both
  times and the component's own ``timing_ms`` per request.

Times are ``time.monotonic()`` (CLOCK_MONOTONIC, one clock for every process on Linux).
"""

from __future__ import annotations

import functools
import json
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ggvision.contract import path_image, request_json

REQUESTS, RESULTS = "local/inference", "local/result"


def _in_process(store: Path, variant: str, threads: int, image: str) -> Callable[[], Any]:
    """The classifier's work for one request by path, as a plain function call."""
    from ggvision.serving.models import backends
    from ggvision.serving.models.store import DEFAULT_BACKEND, Model, resolve_model_dir
    from ggvision.serving.preprocess import decode, preprocess
    from ggvision.serving.tasks.classification import topk

    model = Model.load(resolve_model_dir(store, variant))
    manifest = model.manifest
    engine = backends.create(DEFAULT_BACKEND[manifest.format], model, threads=threads)
    engine.load()
    if manifest.task != "classification":
        from ggvision.serving.tasks import get_task

        task = get_task(manifest.task)

        def served() -> Any:
            data = Path(image).read_bytes()
            tensor, context = task.prepare(decode(data), model)
            output = engine.infer_all(tensor) if task.all_outputs else engine.infer(tensor)
            return task.answer(output, model, top_k=20, threshold=0.5, context=context)

        return served

    def work() -> Any:
        data = Path(image).read_bytes()
        tensor = preprocess(decode(data, spec=manifest.preprocess), manifest)
        return topk(engine.infer(tensor), 5, 0.0, manifest.output.kind)

    return work


def main() -> None:
    from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2
    from awsiot.greengrasscoreipc.model import JsonMessage, PublishMessage

    image = sys.argv[1]
    requests = sys.argv[2] if len(sys.argv) > 2 else REQUESTS
    # executor=None: result callbacks on the SDK's networking thread (on_event only notifies),
    # as the requester component subscribes (IpcBus inline=True): one thread hand-off less
    client = GreengrassCoreIPCClientV2(executor=None)
    cond = threading.Condition()
    results: dict[str, tuple[float, dict[str, Any]]] = {}

    def on_event(event: Any) -> None:
        now = time.monotonic()
        msg = (
            event.json_message.message
            if event.json_message
            else json.loads(event.binary_message.message)
        )
        with cond:
            results[str(msg.get("id"))] = (now, msg)
            cond.notify_all()

    client.subscribe_to_topic(topic=RESULTS, on_stream_event=on_event)

    def publish(rid: str) -> float:
        message = request_json(rid, path_image(image), source="bench")
        sent = time.monotonic()
        msg = PublishMessage(json_message=JsonMessage(message=message))
        client.publish_to_topic(topic=requests, publish_message=msg)
        return sent

    def reply(obj: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    reply({"ready": True})
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["op"] == "cold":
            i = 0
            with cond:
                while not any(k.startswith("cold-") for k in results):
                    cond.release()
                    try:
                        publish(f"cold-{i}")
                    finally:
                        cond.acquire()
                    i += 1
                    cond.wait(0.05)
                first = min(t for k, (t, _) in results.items() if k.startswith("cold-"))
            time.sleep(1.0)  # let the queued cold requests drain
            with cond:
                results.clear()
            reply({"first_result": first, "published": i})
        elif cmd["op"] == "run":
            local = _in_process(Path(cmd["store"]), cmd["variant"], int(cmd["threads"]), image)
            for _ in range(3):
                local()
            rtt, inproc, timing, failed = [], [], [], 0
            for n in range(int(cmd["n"])):
                rid = f"run-{n}"
                t0 = time.perf_counter()
                local()
                inproc.append((time.perf_counter() - t0) * 1000)
                sent = publish(rid)
                with cond:
                    if not cond.wait_for(functools.partial(results.__contains__, rid), timeout=30):
                        reply({"error": f"no result for {rid} in 30 s"})
                        return
                    got, msg = results.pop(rid)
                if msg.get("status") != "ok":
                    failed += 1
                rtt.append((got - sent) * 1000)
                timing.append(msg.get("timing_ms", {}))
            reply({"rtt_ms": rtt, "inprocess_ms": inproc, "timing_ms": timing, "failed": failed})
    client.close()


if __name__ == "__main__":
    main()
