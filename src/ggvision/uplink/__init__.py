"""Results to AWS IoT Core (PublishToIoTCore, QoS 1) with a bounded on-disk outbox.

One thread owns the link. While the outbox is empty results go straight to IoT Core, up to
``maxInFlight`` QoS 1 publishes awaiting their PUBACK at once (a distant broker's round trip does
not cap the rate at one result per round trip); a backlog over half the memory queue moves to the
outbox rather than being dropped. When a publish fails (IoT Core unreachable) the result, and every
later one, goes to a SQLite outbox in the component's work directory, which survives restarts and
is drained oldest first once a publish succeeds again. Delivery is at least once: each payload has
a unique ``result_id`` for de-duplication. The outbox is bounded by messages and bytes; on overflow
the oldest are evicted and counted, and a disk that is full (SQLite "database or disk is full")
drops the new message, counted, without stopping the component.

Payload (UTF-8 JSON, at most 128 KB; ``top`` is trimmed to fit)::

    {"v": 1, "result_id": "<uuid4 hex>", "request_id": "<request id>", "thing": "<thing name>",
     "component": "com.custom.ImageClassifier", "source": "camera" | null,
     "model": {"name": ..., "version": ..., "backend": ...},
     "top": [{"label": "tabby", "index": 281, "score": 0.58}, ...],
     "ts": <result time, epoch ms>, "latency_ms": 31.2}

``_config`` (the configuration model), ``_topic`` (topic resolution), ``_payload`` (the payload),
``_outbox`` (the SQLite outbox), ``_publisher`` (the filter, queue and link thread).
"""

from ggvision.uplink._config import UplinkConfig, selects
from ggvision.uplink._outbox import Outbox
from ggvision.uplink._payload import MAX_PAYLOAD, payload_of
from ggvision.uplink._publisher import Uplink, UplinkStats
from ggvision.uplink._topic import THING_PLACEHOLDER, resolve_topic, thing_name

__all__ = [
    "MAX_PAYLOAD",
    "THING_PLACEHOLDER",
    "Outbox",
    "Uplink",
    "UplinkConfig",
    "UplinkStats",
    "payload_of",
    "resolve_topic",
    "selects",
    "thing_name",
]
