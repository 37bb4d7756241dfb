"""The publisher pipeline: filter and enqueue results, then one link thread publishes them to IoT
Core (pipelined QoS 1), spills a backlog to the outbox and drains it in order once the link is
back."""

from __future__ import annotations

import collections
import dataclasses
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ggvision.bus import Bus
from ggvision.contract import InferenceResult
from ggvision.uplink._config import UplinkConfig, selects
from ggvision.uplink._outbox import Outbox
from ggvision.uplink._payload import payload_of
from ggvision.uplink._topic import resolve_topic

# The package's name, one logger across its modules (log lines keep their "logger" field).
log = logging.getLogger("ggvision.uplink")


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
        if not selects(cfg, result):
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
