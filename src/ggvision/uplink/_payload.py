"""The uplink payload of one result: the documented JSON, trimmed to ``MAX_PAYLOAD``."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from ggvision.contract import InferenceResult
from ggvision.uplink._topic import thing_name

MAX_PAYLOAD = 128 * 1024


def payload_of(result: InferenceResult, component: str, top_k: int) -> bytes:
    """The documented uplink payload of one result (≤ 128 KB)."""
    model = result.model
    obj: dict[str, Any] = {
        "v": 1,
        "result_id": uuid.uuid4().hex,
        "request_id": result.id,
        "thing": thing_name(),
        "component": component,
        "source": result.source,
        "status": result.status,
        "model": (
            {"name": model.name, "version": model.version, "backend": model.backend}
            if model
            else None
        ),
        "top": [
            {"label": p.label, "index": p.index, "score": p.score}
            for p in result.predictions[:top_k]
        ],
        "ts": int(time.time() * 1000),
        "latency_ms": round(result.timing_ms.total, 3) if result.timing_ms.total else None,
    }
    if result.task is not None:
        obj["task"] = result.task
    if result.detections is not None:
        # A detector's answer: its best boxes (label, index, score, box), topK of them.
        obj["detections"] = [d.model_dump() for d in result.detections[:top_k]]
    if result.error is not None:
        obj["error"] = {"code": result.error.code.value, "message": result.error.message[:1024]}
    data = json.dumps(obj, separators=(",", ":")).encode()
    while len(data) > MAX_PAYLOAD and (obj["top"] or obj.get("detections")):
        for key in ("top", "detections"):
            if obj.get(key):
                obj[key] = obj[key][: len(obj[key]) // 2]
        data = json.dumps(obj, separators=(",", ":")).encode()
    return data
