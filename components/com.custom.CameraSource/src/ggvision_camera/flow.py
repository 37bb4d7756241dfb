"""Flow control: requests out, results in, and what is in between.

A frame is published only while fewer than ``max_in_flight`` of this camera's requests are
unanswered; otherwise the captured frame is dropped and counted (nothing queues). Requests are
built by :func:`ggvision.contract.request_json` and answers read by
:func:`ggvision.contract.read_result`, matched by id in a :class:`ggvision.correlate.Correlator`:
an entry with no answer after ``timeout_s`` is expired and counted as lost (a late answer after
that is counted as late). Results of other requesters on the same topic are ignored.

No retries: a frame is perishable. Delivery to the classifier is at most once (a classifier that
crashes loses the requests in flight and those published while it is down; the Nucleus keeps no
pub/sub backlog either), and by the time a retry could go out the next frames are there; a stale
frame's slot may be overwritten anyway. So every request is *counted* instead, exactly once:
``requests`` in the status splits ``sent`` into ``ok`` and ``error`` answers, ``publish_failed``
(never reached the bus), ``unanswered`` (no answer within ``timeout_s``, or still none when the
camera stopped; ``late`` counts those whose answer came after all) and ``in_flight``, so that
``sent == ok + error + publish_failed + unanswered + in_flight`` at every report, and
``in_flight`` is 0 in the last one. A second answer to an answered request is counted as a
``duplicate`` and ignored.
"""

from __future__ import annotations

import collections
import functools
import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ggvision.bus import Bus
from ggvision.contract import InferenceResult, ResultError, read_result, request_json
from ggvision.correlate import Correlator, Unmatched, unique_prefix
from ggvision.stats import percentiles
from ggvision_camera.errors import TransportError
from ggvision_camera.transport import Transport

log = logging.getLogger(__name__)

# Local failures, counted beside the classifier's error codes.
TRANSPORT_FAILED = "TRANSPORT_FAILED"
PUBLISH_FAILED = "PUBLISH_FAILED"
# After a failed publish (the IPC connection is down, say), no frame is sent for this long,
# doubling per failure in a row up to the cap: frames meanwhile count as dropped, one log line
# per outage instead of one per frame, and no decode/encode work for frames nobody can take.
PUBLISH_BACKOFF_S = (0.05, 2.0)


@dataclass
class FlowStats:
    sent: int = 0
    dropped: int = 0
    answered: int = 0
    ok: int = 0
    answer_errors: int = 0  # error answers (also counted by code in ``errors``)
    publish_failed: int = 0
    lost: int = 0  # unanswered: timed out, or still in flight when the camera stopped
    late: int = 0
    duplicates: int = 0
    errors: dict[str, int] = field(default_factory=lambda: collections.defaultdict(int))
    in_flight_peak: int = 0


@dataclass(frozen=True, slots=True)
class _Pending:
    captured_at: float


class InFlightBudget:
    """At most ``limit`` requests in flight over several cameras together (``maxInFlightTotal``),
    handed out in turn: a free slot goes to the camera served least recently among those that
    want one, so a fast camera cannot take every slot from a slow one. A camera waiting in
    :meth:`take` (a file or pattern at fps 0) registers as waiting; a live camera asks with
    :meth:`try_take` for each frame and drops the frame when it is not its turn."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._used = 0
        self._turn = 0
        self._served: dict[str, int] = {}  # camera -> the turn of its last slot
        self._waiting: set[str] = set()
        self._cond = threading.Condition()

    @property
    def used(self) -> int:
        with self._cond:
            return self._used

    def _my_turn(self, who: str, n: int) -> bool:
        if self._used + n > max(self.limit, n):
            return False
        mine = self._served.get(who, -1)
        return all(self._served.get(w, -1) >= mine for w in self._waiting if w != who)

    def _take(self, who: str, n: int) -> None:
        self._used += n
        self._turn += 1
        self._served[who] = self._turn

    def try_take(self, who: str, n: int = 1) -> bool:
        with self._cond:
            if not self._my_turn(who, n):
                return False
            self._take(who, n)
            return True

    def take(self, who: str, n: int, timeout: float) -> bool:
        """Wait up to ``timeout`` for ``n`` slots in turn; False when they did not come."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._waiting.add(who)
            try:
                while not self._my_turn(who, n):
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return False
                    self._cond.wait(left)
                self._take(who, n)
                return True
            finally:
                self._waiting.discard(who)
                self._cond.notify_all()

    def give(self, n: int = 1) -> None:
        if n <= 0:
            return
        with self._cond:
            self._used = max(0, self._used - n)
            self._cond.notify_all()


class FramePublisher:
    """Turns captured frames into requests within the in-flight limit; matches the results.

    :meth:`offer` runs on the capture thread, :meth:`on_result` on the IPC client's thread: it
    only decodes and updates counters under a short lock, never blocks.
    """

    def __init__(
        self,
        bus: Bus,
        transport: Transport,
        *,
        camera: str,
        topic: str | Sequence[str],
        max_in_flight: int,
        timeout_s: float,
        print_results: bool = False,
        clock: Callable[[], float] = time.monotonic,
        budget: InFlightBudget | None = None,
    ) -> None:
        self.bus = bus
        self.budget = budget  # shared with the process's other cameras, if any
        self._reserved = 0  # budget slots taken by wait_for_room for the next offer
        self.transport = transport
        self.camera = camera
        # One request per topic for every frame sent (classify and/or detect), same image.
        self.topics = [topic] if isinstance(topic, str) else list(topic)
        if not self.topics:
            raise ValueError("a frame publisher needs a topic")
        self.topic = self.topics[0]
        self.max_in_flight = max_in_flight
        self.timeout_s = timeout_s
        self.print_results = print_results
        self.clock = clock
        # Ids are unique across restarts, so a late answer to a previous run never matches.
        self._calls: Correlator[_Pending] = Correlator(unique_prefix(camera))  # under _cond
        self.stats = FlowStats()
        self._latencies: collections.deque[float] = collections.deque(maxlen=1000)
        self._cond = threading.Condition()
        self._silent = False  # the consumer stopped answering (logged once)
        self._failures_in_row = 0  # failed publishes since the last good one
        self._paused_until = 0.0  # publish back-off (clock time)

    # --- capture thread ----------------------------------------------------------------------
    def _room(self) -> bool:
        """Room for one frame's requests (one per topic; at least one frame at a time)."""
        return len(self._calls) + len(self.topics) - 1 < max(self.max_in_flight, len(self.topics))

    def has_room(self) -> bool:
        self.expire()
        with self._cond:
            return self._room() and self.clock() >= self._paused_until

    def wait_for_room(self, timeout: float) -> bool:
        """Block until a request may be sent (or ``timeout``); expires overdue entries."""
        deadline = self.clock() + timeout
        while True:
            self.expire()
            with self._cond:
                now = self.clock()
                left = deadline - now
                if now < self._paused_until:  # publish back-off
                    if left <= 0:
                        return False
                    self._cond.wait(min(left, self._paused_until - now))
                    continue
                if self._room() and self.budget is None:
                    return True
                if self._room():
                    break
                if left <= 0:
                    return False
                due = self._calls.next_deadline()
                self._cond.wait(min(left, max(0.001, (now if due is None else due) - now)))
        # Room of our own: now our turn in the slots shared with the other cameras.
        assert self.budget is not None
        if self._reserved:
            return True
        n = len(self.topics)
        if not self.budget.take(self.camera, n, max(0.0, deadline - self.clock())):
            return False
        self._reserved = n
        return True

    def offer(self, frame: np.ndarray, index: int, captured_at: float) -> bool:
        """Publish ``frame`` unless the in-flight limit is reached; True when it was sent."""
        if not self.has_room() or not self._take_budget():
            with self._cond:
                self.stats.dropped += 1
            return False
        # The first topic's id is the frame's index as it always was; the others' are suffixed.
        rids = [
            self._calls.new_id(index if k == 0 else f"{index}-{k}") for k in range(len(self.topics))
        ]
        try:
            image = self.transport.image(frame)  # once: every task's request names it
        except TransportError as exc:
            self._give_budget(len(self.topics))
            with self._cond:
                self.stats.errors[TRANSPORT_FAILED] += 1
            log.error(
                "frame %s not sent: %s", rids[0], exc, extra={"event": "camera.transport_error"}
            )
            return False
        sent = False
        for rid, topic in zip(rids, self.topics, strict=True):
            with self._cond:
                self._calls.add(rid, _Pending(captured_at), deadline=self.clock() + self.timeout_s)
                self.stats.sent += 1
                self.stats.in_flight_peak = max(self.stats.in_flight_peak, len(self._calls))
            request = request_json(rid, image, source=self.camera)
            try:
                fut = self.bus.publish_json(topic, request)
            except Exception as exc:  # boundary: a failed publish is counted, never fatal
                self._publish_failed(rid, exc)
                continue
            fut.add_done_callback(functools.partial(self._published, rid=rid))
            sent = True
        return sent

    def _take_budget(self) -> bool:
        """The shared slots for one frame's requests (reserved by wait_for_room, or now)."""
        if self.budget is None:
            return True
        if self._reserved:
            self._reserved = 0
            return True
        return self.budget.try_take(self.camera, len(self.topics))

    def _give_budget(self, n: int) -> None:
        if self.budget is not None:
            self.budget.give(n)

    def release(self) -> None:
        """Hand back a reservation no frame used (the camera is stopping)."""
        n, self._reserved = self._reserved, 0
        self._give_budget(n)

    def _published(self, fut: Future[Any], rid: str) -> None:
        exc = fut.exception()
        if exc is not None:
            self._publish_failed(rid, exc)
            return
        if not self._failures_in_row:  # the usual case: no lock on the per-frame path
            return
        with self._cond:
            failures, self._failures_in_row = self._failures_in_row, 0
        if failures:
            log.info(
                "publishing again after %d failed publish(es)",
                failures,
                extra={"event": "camera.publish_resumed"},
            )

    def _publish_failed(self, rid: str, exc: BaseException) -> None:
        first, initial, cap = False, *PUBLISH_BACKOFF_S
        with self._cond:
            if self._calls.discard(rid) is None:
                return
            self._give_budget(1)
            self.stats.errors[PUBLISH_FAILED] += 1
            self.stats.publish_failed += 1
            self._failures_in_row += 1
            first = self._failures_in_row == 1
            pause = min(cap, initial * 2 ** (self._failures_in_row - 1))
            self._paused_until = self.clock() + pause
            self._cond.notify_all()
        if first:
            log.error(
                "request %s was not published: %s; frames are dropped while publishing fails "
                "(retrying after %.2g s, backing off to %.2g s)",
                rid,
                exc,
                initial,
                cap,
                extra={"event": "camera.publish_error"},
            )
        else:
            log.debug("request %s was not published: %s", rid, exc)

    def expire(self, *, everything: bool = False) -> int:
        """Forget requests unanswered for ``timeout_s`` (``everything``: all those still in
        flight, when stopping), counted as unanswered; returns how many."""
        now = self.clock()
        with self._cond:
            overdue = self._calls.overdue(math.inf if everything else now)
            for rid, _ in overdue:
                self._calls.expire(rid)
            self._give_budget(len(overdue))
            self.stats.lost += len(overdue)
            if overdue:
                self._cond.notify_all()
            first_silence = bool(overdue) and not self._silent and not everything
            self._silent = self._silent or bool(overdue)
        if first_silence:
            log.warning(
                "no answer within %.3g s for %d request(s): is the classifier running?",
                self.timeout_s,
                len(overdue),
                extra={"event": "camera.results_lost", "topic": self.topic},
            )
        return len(overdue)

    def in_flight(self) -> int:
        with self._cond:
            return len(self._calls)

    # --- IPC thread ----------------------------------------------------------------------------
    def owns(self, rid: str) -> bool:
        """Whether ``rid`` is one of this camera's request ids (no lock needed)."""
        return self._calls.owns(rid)

    def on_result(self, topic: str, payload: bytes | dict[str, Any]) -> None:
        """A message on the result topic. Never blocks, never raises."""
        dispatch(payload, [self])

    def accept(self, result: InferenceResult) -> None:
        """The answer to one of this camera's requests (:meth:`owns` its id)."""
        now = self.clock()
        code = None
        if result.status != "ok":
            code = "UNKNOWN" if result.error is None else str(result.error.code)
        with self._cond:
            pending = self._calls.settle(result.id)
            if isinstance(pending, Unmatched):
                if pending is Unmatched.LATE:
                    self.stats.late += 1
                elif pending is Unmatched.DUPLICATE:
                    self.stats.duplicates += 1
                return
            self._give_budget(1)
            self.stats.answered += 1
            if code is None:
                self.stats.ok += 1
            else:
                self.stats.answer_errors += 1
                self.stats.errors[code] += 1
            latency_ms = (now - pending.captured_at) * 1000
            self._latencies.append(latency_ms)
            resumed = self._silent
            self._silent = False
            self._cond.notify_all()
        if resumed:
            log.info("answers resumed", extra={"event": "camera.results_resumed"})
        if self.print_results:
            _print_result(result, latency_ms)

    # --- status ------------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        self.expire()
        with self._cond:
            s = self.stats
            p50, p95 = percentiles(self._latencies)
            return {
                "sent": s.sent,
                "dropped": s.dropped,
                "answered": s.answered,
                "ok": s.ok,
                "lost": s.lost,
                "late": s.late,
                "duplicates": s.duplicates,
                "errors": dict(s.errors),
                "in_flight": len(self._calls),
                "requests": {
                    "sent": s.sent,
                    "ok": s.ok,
                    "error": s.answer_errors,
                    "publish_failed": s.publish_failed,
                    "unanswered": s.lost,
                    "in_flight": len(self._calls),
                },
                "in_flight_peak": s.in_flight_peak,
                "latency_ms": {} if p50 is None else {"p50": p50, "p95": p95},
            }

    def latencies(self) -> list[float]:
        with self._cond:
            return list(self._latencies)

    def drain(self, timeout: float) -> int:
        """Wait up to ``timeout`` for the answers still due; returns how many are missing."""
        deadline = self.clock() + timeout
        with self._cond:
            while self._calls and self.clock() < deadline:
                self._cond.wait(max(0.001, deadline - self.clock()))
            return len(self._calls)


def dispatch(payload: bytes | dict[str, Any], publishers: Sequence[FramePublisher]) -> None:
    """Read a message on the result topic once and hand it to the camera that asked (by the
    id's prefix); other requesters' results are ignored. Never blocks, never raises."""
    if len(publishers) == 1:
        owner: Callable[[str], bool] = publishers[0].owns
    else:

        def owner(rid: str) -> bool:
            return any(p.owns(rid) for p in publishers)

    try:
        result = read_result(payload, owner)
    except ResultError as exc:
        if exc.rid is not None:
            log.warning(
                "malformed result for %s ignored: %s",
                exc.rid,
                exc.message,
                extra={"event": "camera.bad_result", "id": exc.rid},
            )
        return
    if result is None:
        return  # another requester's result
    for publisher in publishers:
        if publisher.owns(result.id):
            publisher.accept(result)
            return


def _print_result(result: InferenceResult, latency_ms: float) -> None:
    if result.detections is not None:
        _print_detections(result, latency_ms)
        return
    top = result.predictions[0] if result.predictions else None
    code = result.error.code if result.error is not None else "no label"
    log.info(
        "%s: %s",
        result.id,
        f"{top.label} {top.score}" if top else code,
        extra={
            "event": "camera.result",
            "id": result.id,
            "source": result.source,
            "status": result.status,
            "label": top.label if top else None,
            "score": top.score if top else None,
            "latency_ms": round(latency_ms, 2),
        },
    )


def _print_detections(result: InferenceResult, latency_ms: float) -> None:
    found = result.detections or []
    log.info(
        "%s: %s",
        result.id,
        ", ".join(f"{d.label} {d.score}" for d in found) or "nothing detected",
        extra={
            "event": "camera.result",
            "id": result.id,
            "source": result.source,
            "status": result.status,
            "detections": [(d.label, d.score) for d in found],
            "latency_ms": round(latency_ms, 2),
        },
    )
