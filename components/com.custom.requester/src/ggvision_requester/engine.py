"""The request loop: bounded in-flight requests, correlation by id, timeouts, retries, back-off.

One thread (the caller of :meth:`Requester.run`) owns every piece of state, the pending requests
in a :class:`ggvision.correlate.Correlator` among them. The bus callback only reads a result
(:func:`ggvision.contract.read_result`: the ones that are not ours, their id lacking this run's
prefix, are dropped undecoded) and ``put_nowait``\\ s it, stamped with its arrival time, into a
bounded inbox.

Each request keeps its id across attempts, so whichever answer comes first settles it, even one to
an earlier attempt that had timed out; any later answer for a settled id is counted as a
duplicate and ignored. A request is retried (after an exponential back-off) when no answer came
within ``timeoutS`` or when the answer is ``OVERLOADED``, at most ``retries`` times. Retrying is
safe: the classifier runs a request retried under its id once (its recent ids, docs/messages.md
"Delivery and retries"); across a classifier crash, where delivery is at most once, the retries
are what brings the lost answers back.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import random
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ggvision.bus import Bus, message_limit
from ggvision.contract import ErrorCode, InferenceResult, ResultError, read_result
from ggvision.correlate import Correlator
from ggvision_requester.config import RequesterConfig
from ggvision_requester.images import Feed, build_request
from ggvision_requester.stats import TIMEOUT, Outcome, Summary, Tally

log = logging.getLogger(__name__)

INBOX_SIZE = 1024
MAX_WAIT_S = 1.0  # the loop wakes at least this often (stop requests, configuration changes)
JITTER = 0.2  # a back-off is stretched by up to this fraction, so retries do not move in step


@dataclass(slots=True)
class _Pending:
    seq: int
    id: str
    path: Path
    request: dict[str, Any]
    transport: str
    first_sent: float
    attempts: int = 0
    retry_at: float | None = None  # waiting out a back-off until then (deadlines: the correlator)


@dataclass(frozen=True, slots=True)
class _Answer:
    received: float
    result: InferenceResult


def backoff(cfg: RequesterConfig, attempts: int, jitter: float = 0.0) -> float:
    """The delay before attempt ``attempts + 1``: ``backoffS`` doubled per retry, capped."""
    base = min(cfg.max_backoff_s, cfg.backoff_s * 2.0 ** max(0, attempts - 1))
    return base * (1.0 + JITTER * jitter)


class Requester:
    """Sends the feed's images and settles each request exactly once."""

    def __init__(
        self,
        bus: Bus,
        config: Callable[[], RequesterConfig],
        feed: Feed,
        record: Callable[[Outcome], None],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.bus = bus
        self._config = config
        self.feed = feed
        self._record = record
        self._clock = clock
        self.run_id = uuid.uuid4().hex[:12]
        self._calls: Correlator[_Pending] = Correlator(f"{self.run_id}-")
        self._inbox: queue.Queue[_Answer | None] = queue.Queue(INBOX_SIZE)
        self._seq = 0
        self._next_send = 0.0
        self._stop = threading.Event()
        self.tally = Tally()
        self.dropped = 0  # answers lost to a full inbox (they come back as timeouts)
        self.publish_failures = 0

    # --- the bus callback (SDK thread): decode, validate, hand off ---------------------------
    def on_message(self, topic: str, payload: bytes | dict[str, Any]) -> None:
        received = self._clock()
        try:
            result = read_result(payload, self._calls.owns)  # owns(): the prefix, thread-safe
        except ResultError as exc:
            if exc.rid is None:
                log.warning(
                    "undecodable message on %s ignored",
                    topic,
                    extra={"event": "requester.bad_result"},
                )
            else:
                log.warning(
                    "malformed result for %s ignored: %s",
                    exc.rid,
                    exc.message,
                    extra={"event": "requester.bad_result", "id": exc.rid},
                )
            return
        if result is None:
            return  # another requester's (or a camera's) result
        try:
            self._inbox.put_nowait(_Answer(received, result))
        except queue.Full:
            self.dropped += 1
            log.warning(
                "inbox full: result %s dropped",
                result.id,
                extra={"event": "requester.inbox_full", "id": result.id},
            )

    # --- control ----------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask :meth:`run` to return soon (from any thread; not from a signal handler, which may
        interrupt the loop while it holds the inbox's lock)."""
        self._stop.set()
        with contextlib.suppress(queue.Full):  # the loop wakes within MAX_WAIT_S anyway
            self._inbox.put_nowait(None)

    @property
    def in_flight(self) -> int:
        return len(self._calls)

    # --- the loop ------------------------------------------------------------------------------
    def run(self) -> Summary:
        """Send until the feed is exhausted and every request is settled, or until stopped."""
        start = self._clock()
        log.info(
            "run %s started",
            self.run_id,
            extra={"event": "requester.run_start", "run_id": self.run_id},
        )
        while not self._stop.is_set():
            now = self._clock()
            self._drain()  # answers that arrived in time must beat their deadline
            self._expire(now)
            self._resend_due(now)
            self._send_new(now)
            if not self._calls and self.feed.exhausted:
                break
            try:
                answer = self._inbox.get(timeout=self._wait(self._clock()))
            except queue.Empty:
                continue
            if answer is not None:
                self._settle(answer)
        summary = self.tally.summary(self._clock() - start, unanswered=len(self._calls))
        log.info(
            "run %s finished: %s",
            self.run_id,
            summary.to_json(),
            extra={
                "event": "requester.run_end",
                "run_id": self.run_id,
                "stopped": self._stop.is_set(),
            },
        )
        return summary

    def _drain(self) -> None:
        while True:
            try:
                answer = self._inbox.get_nowait()
            except queue.Empty:
                return
            if answer is not None:
                self._settle(answer)

    def _wait(self, now: float) -> float:
        cfg = self._config()
        wake = self._calls.deadlines()
        wake += [p.retry_at for p in self._calls.items() if p.retry_at is not None]
        if len(self._calls) < cfg.max_in_flight and not self.feed.exhausted:
            wake.append(max(self._next_send, self.feed.not_before))
        return min(MAX_WAIT_S, max(0.0, min(wake, default=now + MAX_WAIT_S) - now))

    def _send_new(self, now: float) -> None:
        cfg = self._config()
        while len(self._calls) < cfg.max_in_flight and now >= self._next_send:
            item = self.feed.take(now)
            if item is None:
                return
            self._seq += 1
            rid = self._calls.new_id(f"{self._seq:06d}")
            request, transport = build_request(
                cfg, rid, item.path, max_message_bytes=message_limit(self.bus)
            )
            pending = _Pending(self._seq, rid, item.path, request, transport, first_sent=now)
            self._calls.add(rid, pending, deadline=None)
            self._publish(pending, now)
            self._next_send = now + cfg.interval_s

    def _resend_due(self, now: float) -> None:
        for p in self._calls.items():
            if p.retry_at is not None and now >= p.retry_at:
                self._publish(p, now)

    def _publish(self, p: _Pending, now: float) -> None:
        cfg = self._config()
        p.attempts += 1
        p.retry_at = None
        self._calls.arm(p.id, now + cfg.timeout_s)
        try:
            future = self.bus.publish_json(cfg.inference_topic, p.request)
        except Exception as exc:  # boundary: the request then times out and is retried
            self._publish_failed(p.id, exc)
            return
        rid = p.id

        def published(f: Future[Any]) -> None:  # runs on the SDK's thread: log only
            exc = f.exception()
            if exc is not None:
                self._publish_failed(rid, exc)

        future.add_done_callback(published)

    def _publish_failed(self, rid: str, exc: BaseException) -> None:
        self.publish_failures += 1
        log.error(
            "publishing request %s failed: %s",
            rid,
            exc,
            extra={"event": "requester.publish_failed", "id": rid},
        )

    def _retry(self, p: _Pending, now: float, reason: str) -> None:
        delay = backoff(self._config(), p.attempts, random.random())  # noqa: S311 # jitter # nosec B311
        p.retry_at = now + delay
        self._calls.arm(p.id, None)
        self.tally.retries += 1
        log.info(
            "retrying %s in %.2f s (%s, attempt %d)",
            p.id,
            delay,
            reason,
            p.attempts,
            extra={"event": "requester.retry", "id": p.id, "reason": reason},
        )

    def _expire(self, now: float) -> None:
        retries = self._config().retries
        for _, p in self._calls.overdue(now):
            if p.attempts <= retries:
                self._retry(p, now, "timeout")
                continue
            self._calls.expire(p.id)  # an answer after this is ignored
            self._finish(
                Outcome(
                    id=p.id,
                    seq=p.seq,
                    image=str(p.path),
                    status="timeout",
                    predictions=[],
                    error={"code": TIMEOUT, "message": f"no answer after {p.attempts} attempt(s)"},
                    latency_ms=None,
                    attempts=p.attempts,
                    transport=p.transport,
                ),
            )

    def _settle(self, answer: _Answer) -> None:
        result = answer.result
        p = self._calls.get(result.id)
        overloaded = result.error is not None and result.error.code is ErrorCode.OVERLOADED
        if p is None or (overloaded and p.retry_at is not None):
            # Settled (or timed out) already, or a late OVERLOADED for an attempt whose retry is
            # scheduled.
            if p is None:
                self._calls.settle(result.id)  # counted there as late or duplicate
            self.tally.duplicates += 1
            log.info(
                "duplicate answer for %s ignored",
                result.id,
                extra={"event": "requester.duplicate", "id": result.id},
            )
            return
        if overloaded and p.attempts <= self._config().retries:
            self._retry(p, answer.received, "OVERLOADED")
            return
        error = result.error.model_dump(mode="json") if result.error else None
        self._calls.settle(p.id)
        self._finish(
            Outcome(
                id=p.id,
                seq=p.seq,
                image=str(p.path),
                status=result.status,
                predictions=[pr.model_dump(mode="json") for pr in result.predictions],
                error=error,
                latency_ms=round((answer.received - p.first_sent) * 1000.0, 3),
                attempts=p.attempts,
                transport=p.transport,
            ),
        )

    def _finish(self, outcome: Outcome) -> None:
        self.tally.add(outcome)
        self._record(outcome)
