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
"""

from __future__ import annotations

import collections
import dataclasses
import json
import logging
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field

from ggvision.bus import Bus
from ggvision.config import ConfigModel, publishes_to_iot_core
from ggvision.contract import InferenceResult

log = logging.getLogger(__name__)

MAX_PAYLOAD = 128 * 1024
THING_PLACEHOLDER = "{thing}"


class UplinkConfig(ConfigModel):
    """The ``uplink`` section of a component's configuration."""

    enabled: bool = Field(False, description="publish results to AWS IoT Core")
    topic: str = Field(
        "ggvision/{thing}/results",
        min_length=1,
        description="IoT Core topic; {thing} is replaced by the core's thing name",
        json_schema_extra=publishes_to_iot_core(),
    )
    every: int = Field(1, ge=1, le=1_000_000, description="publish 1 of every N matching results")
    labels: list[str] = Field(
        default_factory=list, description="only results whose top label is listed (empty: any)"
    )
    min_score: float = Field(0.0, ge=0.0, le=1.0, description="only results whose top score ≥")
    top_k: int = Field(3, ge=1, le=100, description="predictions per payload")
    include_errors: bool = Field(False, description="also publish error results")
    outbox_path: str = Field(
        "", description="SQLite outbox file; empty: uplink-outbox.sqlite3 in the work directory"
    )
    outbox_max_messages: int = Field(
        100_000, ge=1, description="outbox bound; the oldest are evicted beyond it"
    )
    outbox_max_bytes: int = Field(
        64 * 1024 * 1024, ge=64 * 1024, description="outbox file size bound (bytes)"
    )
    queue_size: int = Field(
        1000,
        ge=1,
        description="results waiting in memory; a backlog over half of it moves to the outbox, "
        "beyond it dropped, counted",
    )
    max_in_flight: int = Field(
        16, ge=1, le=1000, description="QoS 1 publishes awaiting their PUBACK at once"
    )
    publish_timeout_seconds: float = Field(10.0, gt=0, description="wait for a PUBACK")
    retry_max_seconds: float = Field(30.0, gt=0, description="longest wait between retries")


def thing_name() -> str:
    return os.environ.get("AWS_IOT_THING_NAME", "") or "unknown"


def resolve_topic(template: str) -> str:
    return template.replace(THING_PLACEHOLDER, thing_name())


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
    if result.error is not None:
        obj["error"] = {"code": result.error.code.value, "message": result.error.message[:1024]}
    data = json.dumps(obj, separators=(",", ":")).encode()
    while len(data) > MAX_PAYLOAD and obj["top"]:
        obj["top"] = obj["top"][: len(obj["top"]) // 2]
        data = json.dumps(obj, separators=(",", ":")).encode()
    return data


def _is_full(exc: sqlite3.OperationalError) -> bool:
    return "full" in str(exc).lower()


class Outbox:
    """A bounded FIFO of (topic, payload) in SQLite. Use from one thread."""

    def __init__(self, path: Path, *, max_messages: int, max_bytes: int) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_messages = max_messages
        self.evicted = 0
        self.dropped_full = 0
        self._db = sqlite3.connect(str(self.path), isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        page = int(self._db.execute("PRAGMA page_size").fetchone()[0])
        self._db.execute(f"PRAGMA max_page_count={max(8, max_bytes // page)}")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS outbox ("
            "seq INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, payload BLOB NOT NULL)"
        )
        self._count = int(self._db.execute("SELECT count(*) FROM outbox").fetchone()[0])

    def __len__(self) -> int:
        return self._count

    def put(self, topic: str, payload: bytes) -> bool:
        """Append; evicts the oldest beyond the bounds. False (counted) when it cannot be kept."""
        if self._count >= self.max_messages:
            self._evict(self._count - self.max_messages + 1)
        for attempt in range(2):
            try:
                self._db.execute(
                    "INSERT INTO outbox (topic, payload) VALUES (?, ?)", (topic, payload)
                )
                self._count += 1
                return True
            except sqlite3.OperationalError as exc:
                if not _is_full(exc):
                    raise
                if attempt == 0 and self._count:
                    # Full by the byte bound (or the disk): make room from the oldest end.
                    try:
                        self._evict(max(1, self._count // 100))
                        continue
                    except sqlite3.OperationalError as evict_exc:
                        if not _is_full(evict_exc):
                            raise
                        # A full disk refuses even the delete (its journal needs room too).
                self.dropped_full += 1
                log.error(
                    "uplink outbox is full; a message is dropped: %s",
                    exc,
                    extra={"event": "uplink.outbox_full"},
                )
                return False
        return False

    def oldest(self, n: int) -> list[tuple[int, str, bytes]]:
        rows = self._db.execute(
            "SELECT seq, topic, payload FROM outbox ORDER BY seq LIMIT ?", (n,)
        ).fetchall()
        return [(int(s), str(t), bytes(p)) for s, t, p in rows]

    def delete(self, seq: int) -> None:
        cur = self._db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))
        self._count -= cur.rowcount

    def _evict(self, n: int) -> None:
        cur = self._db.execute(
            "DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox ORDER BY seq LIMIT ?)", (n,)
        )
        self._count -= cur.rowcount
        self.evicted += cur.rowcount
        if cur.rowcount:
            log.warning(
                "uplink outbox over its bound: %d oldest evicted",
                cur.rowcount,
                extra={"event": "uplink.evicted"},
            )

    def close(self) -> None:
        self._db.close()


@dataclass
class UplinkStats:
    offered: int = 0
    filtered: int = 0
    sent: int = 0
    failed_publishes: int = 0
    dropped_queue: int = 0
    buffered: int = 0
    evicted: int = 0
    dropped_full: int = 0
    online: bool = True

    def snapshot(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_STOP = object()


class Uplink:
    """Filters results and publishes them to IoT Core through the outbox thread."""

    def __init__(
        self,
        bus: Bus,
        cfg: UplinkConfig,
        *,
        component: str,
        work_dir: Path | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.bus = bus
        self.cfg = cfg
        self.component = component
        self.topic = resolve_topic(cfg.topic)
        self.outbox_path = (
            Path(cfg.outbox_path)
            if cfg.outbox_path
            else ((work_dir or Path.cwd()) / "uplink-outbox.sqlite3")
        )
        self.stats = UplinkStats()
        self._clock = clock
        self._matched = 0
        self._queue: collections.deque[tuple[str, bytes] | object] = collections.deque()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    # --- producer side (the classifier's reply path) ---------------------------------------------
    def offer(self, result: InferenceResult) -> None:
        """Filter and enqueue one result; never blocks, never raises."""
        try:
            with self._cond:  # called from the worker and the intake threads
                self.stats.offered += 1
                wanted = self._wanted(result)
                if not wanted:
                    self.stats.filtered += 1
            if not wanted:
                return
            payload = payload_of(result, self.component, self.cfg.top_k)
        except Exception:  # boundary: the uplink never breaks the reply path
            log.exception("uplink could not encode a result", extra={"event": "uplink.error"})
            return
        with self._cond:
            if len(self._queue) >= self.cfg.queue_size:
                self.stats.dropped_queue += 1
                return
            self._queue.append((self.topic, payload))
            self._cond.notify()

    def _wanted(self, result: InferenceResult) -> bool:
        cfg = self.cfg
        if result.status != "ok":
            if not cfg.include_errors:
                return False
        else:
            top = result.predictions[0] if result.predictions else None
            if cfg.labels and (top is None or top.label not in cfg.labels):
                return False
            if cfg.min_score and (top is None or top.score < cfg.min_score):
                return False
        self._matched += 1
        return (self._matched - 1) % cfg.every == 0

    # --- the link thread -----------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="uplink", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            raise self._error

    def stop(self, timeout: float = 10.0) -> None:
        """Stop; results not yet published stay in the outbox for the next start."""
        with self._cond:
            self._queue.append(_STOP)
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        try:
            outbox = Outbox(
                self.outbox_path,
                max_messages=self.cfg.outbox_max_messages,
                max_bytes=self.cfg.outbox_max_bytes,
            )
        except Exception as exc:  # boundary: reported to start()
            log.exception("uplink outbox cannot open", extra={"event": "uplink.outbox_error"})
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        if len(outbox):
            log.info(
                "uplink outbox holds %d result(s) from before",
                len(outbox),
                extra={"event": "uplink.backlog"},
            )
        backoff = 0.5
        next_try = 0.0
        try:
            while True:
                self._sync(outbox)
                now = self._clock()
                if len(outbox):
                    if self._spill(outbox):
                        break
                    if now >= next_try:
                        if self._drain(outbox):
                            backoff = 0.5
                        else:
                            next_try = self._clock() + backoff
                            backoff = min(backoff * 2, self.cfg.retry_max_seconds)
                        continue
                    item = self._take(next_try - now)
                else:
                    item = self._take(None)
                if item is None:
                    continue
                if item is _STOP:
                    break
                assert isinstance(item, tuple)
                batch = [item, *self._take_more(self.cfg.max_in_flight - 1)]
                if len(outbox):
                    for topic, payload in batch:
                        self._keep(outbox, topic, payload)
                    continue
                sent = self._send_many(batch)
                if sent < len(batch):
                    for topic, payload in batch[sent:]:
                        self._keep(outbox, topic, payload)
                    next_try = self._clock() + backoff
                    backoff = min(backoff * 2, self.cfg.retry_max_seconds)
                elif len(self._queue) > self.cfg.queue_size // 2 and self._spill(outbox):
                    # The link was slower than the results: the bounded outbox took the
                    # backlog (in order) instead of the memory queue dropping it; stop came too.
                    break
        finally:
            # Whatever is still in memory survives in the outbox.
            with self._cond:
                rest = [i for i in self._queue if isinstance(i, tuple)]
                self._queue.clear()
            for topic, payload in rest:
                self._keep(outbox, topic, payload)
            self._sync(outbox)
            outbox.close()

    def _take(self, timeout: float | None) -> tuple[str, bytes] | object | None:
        with self._cond:
            if not self._queue:
                self._cond.wait(timeout)
            if not self._queue:
                return None
            return self._queue.popleft()

    def _take_more(self, n: int) -> list[tuple[str, bytes]]:
        """Up to ``n`` more queued results without waiting (never the stop marker)."""
        out: list[tuple[str, bytes]] = []
        with self._cond:
            while len(out) < n and self._queue and isinstance(self._queue[0], tuple):
                out.append(self._queue.popleft())  # type: ignore[arg-type]
        return out

    def _spill(self, outbox: Outbox) -> bool:
        """Move what waits in memory behind the backlog (keeps the order); True on stop."""
        with self._cond:
            items = list(self._queue)
            self._queue.clear()
        stop = False
        for item in items:
            if item is _STOP:
                stop = True
            elif isinstance(item, tuple):
                self._keep(outbox, *item)
        return stop

    def _drain(self, outbox: Outbox) -> bool:
        """Publish the oldest buffered results in order; False at the first failure."""
        while True:
            rows = outbox.oldest(self.cfg.max_in_flight)
            if not rows:
                break
            sent = self._send_many([(topic, payload) for _, topic, payload in rows])
            for seq, _, _ in rows[:sent]:
                outbox.delete(seq)
            self._sync(outbox)
            if sent < len(rows):
                return False
            with self._cond:
                if self._queue:
                    return True  # new results or the stop marker: back to the loop
        if not len(outbox):
            log.info("uplink outbox drained", extra={"event": "uplink.drained"})
        return True

    def _keep(self, outbox: Outbox, topic: str, payload: bytes) -> None:
        try:
            outbox.put(topic, payload)
        except sqlite3.Error:
            outbox.dropped_full += 1
            log.exception("uplink outbox write failed", extra={"event": "uplink.outbox_error"})
        self._sync(outbox)

    def _send_many(self, items: list[tuple[str, bytes]]) -> int:
        """Publish ``items`` pipelined (QoS 1, all in flight at once), then await their PUBACKs
        in order. Returns how many *leading* items were acknowledged; the rest are to be kept
        (a later one that did arrive is sent again: at-least-once, the ids de-duplicate)."""
        futures: list[Future[Any]] = []
        failure: BaseException | None = None
        for topic, payload in items:
            try:
                futures.append(self.bus.publish_iot(topic, payload, 1))
            except Exception as exc:  # the client refused at once (closed, link down)
                failure = exc
                break
        acked = 0
        deadline = self._clock() + self.cfg.publish_timeout_seconds
        for fut in futures:
            try:
                fut.result(max(0.0, deadline - self._clock()))
            except Exception as exc:  # the link is down (ServiceError) or slow: buffer
                failure = exc
                break
            acked += 1
        with self._cond:
            self.stats.sent += acked
        if failure is not None:
            self.stats.failed_publishes += 1
            if self.stats.online:
                log.warning(
                    "IoT Core unreachable, buffering results: %s: %s",
                    type(failure).__name__,
                    getattr(failure, "message", None) or failure,
                    extra={"event": "uplink.offline"},
                )
            self.stats.online = False
            return acked
        if not self.stats.online:
            log.info("IoT Core reachable again", extra={"event": "uplink.online"})
        self.stats.online = True
        return acked

    def _sync(self, outbox: Outbox) -> None:
        self.stats.buffered = len(outbox)
        self.stats.evicted = outbox.evicted
        self.stats.dropped_full = outbox.dropped_full
