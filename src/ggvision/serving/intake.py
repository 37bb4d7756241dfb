"""Intake: the IPC callback -> bounded per-source queues, with admission, served round-robin.

The callback only decodes, validates and enqueues: it never blocks and never raises. Every
request it cannot take is answered at once: an invalid one with its error, and when the queue is
full ``OVERLOADED`` (a request), or the *oldest* queued camera frames are dropped for the new one
(answered ``OVERLOADED`` too, and counted). While stopping, everything is answered
``OVERLOADED``.

"Full" is what the queue protects, not a count of requests (Triton's queue policy):

* memory: the images of the waiting requests may hold at most ``max_bytes`` together (a
  request's bytes: its inline image's, its frame slot's, or its file's size; see
  ``request_bytes``). One request is always admitted into an empty queue, whatever its size
  (its own size is bounded by the loader's ``max_bytes``);
* latency: a request that waited longer than ``max_delay_s`` in the queue is answered
  ``OVERLOADED`` ("deadline exceeded ...") instead of being served stale;
* a count, ``queue_size``: a backstop on the bookkeeping, far above what the two others allow
  for any real image.

0 switches the byte bound or the deadline off.

Fairness: each request's ``source`` (a camera's name; requests without one share a queue) has its
own queue, a *lane*, and the consumer takes from the lanes in turn (round-robin), the oldest of
each first, so a fast source can never starve a slow one: a slow camera's frame waits behind at
most one request of every other source. The bounds above are global; when they are reached a
new frame drops the oldest frame of the lane holding the *most* frames (its own lane when that
is the longest: today's drop-oldest rule, within the source), so the flooding camera pays for
its own flood. A request (not a frame) is still answered ``OVERLOADED`` when the queue is full.

At most ``max_sources`` lanes are tracked (with their figures): a new source name past the
bound takes the place of the least recently seen lane that has nothing queued or running and
was idle for ``SOURCE_IDLE_S``; when there is none, the new source's requests share the one
overflow lane ``(other)`` (still served in turn, with its own figures), so a client spraying
source names never grows memory past the bound.

Micro-batching: :meth:`Intake.take_batch` takes up to ``limit`` items in turn from the lanes,
waiting at most ``delay_s`` after the oldest waiting one arrived for more to come (Triton's
dynamic batcher: ``max_batch_size`` and ``max_queue_delay_microseconds``).

A valid request whose id was seen recently is not run twice (:mod:`ggvision.serving.recent`):
the same request queued or in flight answers its duplicate too (nothing more is published), one
answered ``ok`` recently is answered again with that result. Every admitted request's one
answer goes through :meth:`Intake.answer`, which also ends its claim.
"""

from __future__ import annotations

import collections
import heapq
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np

from ggvision.contract import (
    ErrorCode,
    InferenceRequest,
    InferenceResult,
    RequestError,
    Timing,
    decode_payload,
    error_result,
    parse_request,
    peek_envelope,
)
from ggvision.serving.models.loading import ActiveModel
from ggvision.serving.recent import Key, RecentIds, Seen
from ggvision.serving.replies import Replies
from ggvision.stats import percentiles
from ggvision.telemetry import RateMeter

log = logging.getLogger(__name__)

ReplyTopicCheck = Callable[[str], bool]
RequestBytes = Callable[[InferenceRequest], int]

DEADLINE_EXCEEDED: Final = "deadline exceeded"  # the start of a deadline's OVERLOADED message
NO_SOURCE: Final = "(none)"  # the figures' name of the lane of requests without a source
OTHER: Final = "(other)"  # the overflow lane of the sources past ``max_sources``
MAX_SOURCES: Final = 64
SOURCE_IDLE_S: Final = 60.0  # a lane idle this long may make room for a new source
LATENCIES: Final = 256  # recent latencies kept per lane, for its p50/p95


@dataclass(slots=True)
class Item:
    """One accepted request on its way through the stages."""

    request: InferenceRequest
    reply_topic: str
    received: float
    timing: Timing = field(default_factory=Timing)
    tensor: np.ndarray | None = None
    context: Any = None  # the task's per-request context, from prepare to answer
    active: ActiveModel | None = None
    error: RequestError | None = None
    key: Key | None = None  # its claim in the recent ids, ended by its answer
    bytes: int = 0  # what its image holds (or will hold) in memory while it waits
    lane: Lane | None = None  # its source's queue and figures, from admission to its answer
    seq: int = 0  # its admission number (1, 2, ...; 0: not admitted)


@dataclass(slots=True, eq=False)
class Lane:
    """One source's queue and figures (``name``: the source, :data:`NO_SOURCE` or
    :data:`OTHER`)."""

    name: str
    seen: float  # when its last request arrived
    queue: collections.deque[Item] = field(default_factory=collections.deque)
    frames: int = 0  # of the queued items
    in_flight: int = 0  # admitted and not answered yet (queued, being prepared or run)
    ok: int = 0
    errors: int = 0  # answered with an error other than OVERLOADED
    dropped: int = 0  # answered OVERLOADED: dropped frames, rejected, past the deadline
    dropped_frames: int = 0  # of ``dropped``: frames a newer frame replaced
    latencies: collections.deque[float] = field(
        default_factory=lambda: collections.deque(maxlen=LATENCIES)
    )
    rate: RateMeter = field(default_factory=RateMeter)

    def figures(self) -> dict[str, Any]:
        """Its status figures (results/s since the last call, latency p50/p95 of the recent
        ``ok`` answers)."""
        p50, p95 = percentiles(list(self.latencies))
        return {
            "fps": self.rate.rate(self.ok),
            "ok": self.ok,
            "latency_ms": {"p50": p50, "p95": p95},
            "dropped": self.dropped,
            "dropped_frames": self.dropped_frames,
            "errors": self.errors,
            "queued": len(self.queue),
        }


class Intake:
    """The bounded queue of accepted requests and the callback that fills it. ``role``: the
    component's role in messages and event keys (``classifier``); ``recent``: the recent ids
    (default: :class:`~ggvision.serving.recent.RecentIds` with its default bounds);
    ``max_bytes``, ``max_delay_s``, ``queue_size``: the bounds (module doc; 0: no byte bound, no
    deadline); ``request_bytes``: a request's bytes (default: none counted); ``max_sources``: the
    lanes tracked (module doc). Never blocks."""

    def __init__(
        self,
        replies: Replies,
        *,
        result_topic: str,
        queue_size: int,
        reply_topic_allowed: ReplyTopicCheck,
        role: str,
        recent: RecentIds | None = None,
        max_bytes: int = 0,
        max_delay_s: float = 0.0,
        request_bytes: RequestBytes | None = None,
        max_sources: int = MAX_SOURCES,
    ) -> None:
        self.replies = replies
        self.recent = recent if recent is not None else RecentIds()
        self.result_topic = result_topic
        self.queue_size = queue_size
        self.reply_topic_allowed = reply_topic_allowed
        self.role = role
        self.max_bytes = max_bytes
        self.max_delay_s = max_delay_s
        self.request_bytes = request_bytes
        self.max_sources = max(1, max_sources)
        self._lanes: dict[
            str | None, Lane
        ] = {}  # by source (None: no source), OTHER past the bound
        self._ring: collections.deque[Lane] = (
            collections.deque()
        )  # lanes with queued items, in turn
        self._count = 0  # of the queued items
        self._bytes = 0  # of the queued items
        self._cond = threading.Condition()
        self._stopping = False
        # Admission numbers: the last given, the open ones (a heap) and those answered out of
        # order (the lanes are served in turn), for :meth:`watermark`.
        self._seq = 0
        self._open: list[int] = []
        self._closed: set[int] = set()

    # --- the IPC callback thread ---------------------------------------------------------------
    def on_message(self, topic: str, payload: bytes | dict[str, Any]) -> None:
        """Decode, validate, enqueue. Never blocks, never raises."""
        received = time.monotonic()
        self.replies.count(received=1)
        rid, reply, source = peek_envelope(payload if isinstance(payload, dict) else None)
        try:
            try:
                obj = decode_payload(payload)
            except RequestError:
                rid, reply, source = self._scanned_envelope(payload)
                raise
            rid, reply, source = peek_envelope(obj)
            if reply is not None and not self.reply_topic_allowed(reply):
                reply = None
                raise RequestError(
                    ErrorCode.INVALID_REQUEST,
                    "reply_topic is not allowed by this component's recipe",
                )
            request = parse_request(obj if obj.get("id") is not None else {**obj, "id": rid})
        except RequestError as exc:
            self.replies.reply(
                error_result(rid, exc.code, exc.message, source=source), reply or self.result_topic
            )
            return
        except Exception as exc:  # boundary
            log.exception("request intake failed", extra={"event": f"{self.role}.intake_error"})
            self.replies.reply(
                error_result(rid, ErrorCode.INTERNAL, f"intake failed: {exc}", source=source),
                reply or self.result_topic,
            )
            return
        item = Item(request, request.reply_topic or self.result_topic, received)
        if self.request_bytes is not None:
            try:
                item.bytes = max(0, self.request_bytes(request))
            except Exception:  # boundary: a size we cannot tell counts as none
                log.debug("request size unknown", exc_info=True)
        self.accept(item, generated_id=obj.get("id") is None)

    def accept(self, item: Item, *, generated_id: bool = False) -> None:
        """Admit ``item`` unless it is a duplicate of a recent request (one whose id was
        generated here never is)."""
        if generated_id:
            self.admit(item)
            return
        claim = self.recent.claim(item.request, item.reply_topic)
        if claim.seen is Seen.RUNNING:
            self.replies.count(duplicates_in_flight=1)
        elif claim.seen is Seen.ANSWERED and claim.answer is not None:
            self.replies.repeat(claim.answer, item.reply_topic)
        else:
            item.key = claim.key
            self.admit(item)

    def _scanned_envelope(
        self, payload: bytes | dict[str, Any]
    ) -> tuple[str, str | None, str | None]:
        """(id, reply_topic, source) of an undecodable request, found in its raw bytes; the reply
        topic only when the recipe allows it, as for a decoded request (else the result topic)."""
        rid, reply, source = peek_envelope(payload)
        if reply is not None and not self.reply_topic_allowed(reply):
            reply = None
        return rid, reply, source

    def configure(
        self,
        *,
        queue_size: int,
        max_bytes: int | None = None,
        max_delay_s: float | None = None,
        max_sources: int | None = None,
    ) -> None:
        """New bounds, for the requests admitted from now on (a deployment's update; fewer
        ``max_sources`` keeps the lanes there are until they idle out)."""
        with self._cond:
            self.queue_size = queue_size
            if max_bytes is not None:
                self.max_bytes = max_bytes
            if max_delay_s is not None:
                self.max_delay_s = max_delay_s
            if max_sources is not None:
                self.max_sources = max(1, max_sources)

    # --- lanes (all called with the lock held) -------------------------------------------------
    def _lane(self, source: str | None, now: float) -> Lane:
        """The lane of ``source``, made when new (past the bound: an idle lane's place, else the
        overflow lane)."""
        lane = self._lanes.get(source)
        if lane is None:
            tracked = len(self._lanes) - (OTHER in self._lanes)
            if tracked >= self.max_sources and not self._evict_idle(now):
                source = OTHER
                lane = self._lanes.get(OTHER)
            if lane is None:
                name = NO_SOURCE if source is None else source
                lane = self._lanes[source] = Lane(name, now)
        lane.seen = now
        return lane

    def _evict_idle(self, now: float) -> bool:
        """Forget the least recently seen lane with nothing queued or running, idle for
        :data:`SOURCE_IDLE_S` (its figures go with it); False when there is none."""
        idle = [
            (lane.seen, key)
            for key, lane in self._lanes.items()
            if key != OTHER
            and not lane.in_flight
            and not lane.queue
            and now - lane.seen >= SOURCE_IDLE_S
        ]
        if not idle:
            return False
        del self._lanes[min(idle, key=lambda pair: pair[0])[1]]
        return True

    def _pop(self, lane: Lane, item: Item | None = None) -> Item:
        """Take ``item`` (default: the oldest) out of ``lane``'s queue."""
        if item is None:
            item = lane.queue.popleft()
        else:
            lane.queue.remove(item)
        self._count -= 1
        self._bytes -= item.bytes
        if item.request.is_frame:
            lane.frames -= 1
        if not lane.queue:
            self._ring.remove(lane)
        return item

    def _drop_frame(self, own: Lane) -> Item | None:
        """Take the oldest frame of the lane holding the most frames (``own`` on a tie); None
        when no frame is queued."""
        lane = max(self._ring, key=lambda ln: (ln.frames, ln is own), default=None)
        if lane is None or not lane.frames:
            return None
        oldest = next(i for i in lane.queue if i.request.is_frame)
        return self._pop(lane, oldest)

    def _full(self, item: Item) -> str | None:
        """Why ``item`` does not fit (None: it does). Called with the lock held."""
        n = self._count
        if not n:
            return None
        if n >= self.queue_size:
            return f"queue full ({n} waiting, the most it holds); retry later"
        if self.max_bytes and self._bytes + item.bytes > self.max_bytes:
            return (
                f"queue full ({n} waiting hold {self._bytes} bytes of images; with this one's "
                f"{item.bytes} that is over the bound of {self.max_bytes}); retry later"
            )
        return None

    def _expired(self, now: float) -> list[Item]:
        """Take the queued items past their deadline (each lane is in arrival order). Called
        with the lock held."""
        out: list[Item] = []
        if not self.max_delay_s:
            return out
        for lane in list(self._ring):
            while lane.queue and now - lane.queue[0].received > self.max_delay_s:
                out.append(self._pop(lane))
        return out

    def admit(self, item: Item) -> None:
        """Queue ``item``, or answer ``OVERLOADED`` (for it, or for the oldest frames it
        replaces); requests past their deadline are answered on the way."""
        rejected: Item | None = None
        dropped: list[Item] = []
        reason: str | None = None
        with self._cond:
            now = time.monotonic()
            expired = self._expired(now)
            item.lane = lane = self._lane(item.request.source, now)
            lane.in_flight += 1
            self._seq += 1
            item.seq = self._seq
            heapq.heappush(self._open, item.seq)
            if self._stopping:
                rejected, reason = item, f"{self.role} is stopping"
            elif (reason := self._full(item)) is None:
                self._push(item)
            elif item.request.is_frame:
                # Drop-oldest: older frames of the longest lane make room for the new one
                # (requests are kept).
                while self._full(item) is not None and (old := self._drop_frame(lane)):
                    dropped.append(old)
                if (reason := self._full(item)) is None:
                    self._push(item)
                else:
                    rejected = item
            else:
                rejected = item
        for old in expired:
            self._answer_expired(old)
        if dropped:
            self.replies.count(dropped_frames=len(dropped))
        for old in dropped:
            if old.lane is not None:
                with self._cond:
                    old.lane.dropped_frames += 1
            self._overloaded(old, "frame dropped: a newer frame replaced it")
        if rejected is not None and reason is not None:
            self._overloaded(rejected, reason)

    def _push(self, item: Item) -> None:
        lane = item.lane
        assert lane is not None
        if not lane.queue:
            self._ring.append(lane)
        lane.queue.append(item)
        if item.request.is_frame:
            lane.frames += 1
        self._count += 1
        self._bytes += item.bytes
        self._cond.notify()

    def _overloaded(self, item: Item, message: str) -> None:
        self.replies.count(overloaded=1)
        self.answer(
            item,
            error_result(
                item.request.id, ErrorCode.OVERLOADED, message, source=item.request.source
            ),
        )

    def _answer_expired(self, item: Item) -> None:
        waited = (time.monotonic() - item.received) * 1000
        self._overloaded(
            item,
            f"{DEADLINE_EXCEEDED}: waited {waited:.0f} ms in the queue, over the "
            f"{self.max_delay_s * 1000:.0f} ms a request may wait; retry later",
        )

    def answer(self, item: Item, result: InferenceResult) -> None:
        """Publish the one answer of an admitted ``item`` (ending its claim in the recent
        ids first, so a retry arriving meanwhile is answered from there)."""
        self.replies.stamp(result)
        data = self.replies.serialize(result)  # once, for the recent answers and the reply
        if item.key is not None:
            self.recent.finish(item.key, result, data)
        lane, item.lane = item.lane, None
        if item.seq:
            with self._cond:
                self._settle(item.seq)
            item.seq = 0
        if lane is not None:
            with self._cond:
                lane.in_flight -= 1
                if result.status == "ok":
                    lane.ok += 1
                    lane.latencies.append(result.timing_ms.total)
                elif result.error is not None and result.error.code is ErrorCode.OVERLOADED:
                    lane.dropped += 1
                else:
                    lane.errors += 1
        self.replies.reply(result, item.reply_topic, data)

    def _settle(self, seq: int) -> None:
        """Admission number ``seq`` is answered (called with the lock held)."""
        self._closed.add(seq)
        while self._open and self._open[0] in self._closed:
            self._closed.discard(heapq.heappop(self._open))

    def watermark(self) -> tuple[int, int]:
        """(admitted, settled): the requests admitted so far, and the largest n such that
        the first n admitted are all answered (answers leave in the lanes' turn, not in
        arrival order, so a count of answers would not say it)."""
        with self._cond:
            return self._seq, (self._open[0] - 1) if self._open else self._seq

    # --- the consumer --------------------------------------------------------------------------
    def take(self) -> Item | None:
        """The next queued item within its deadline (lanes in turn; those past it are
        answered); waits for one. None once stopping and empty."""
        items = self.take_batch(1)
        return items[0] if items else None

    def take_batch(self, limit: int, delay_s: float = 0.0) -> list[Item]:
        """Up to ``limit`` queued items within their deadline, from the lanes in turn (the
        oldest of each first); waits for one, then up to ``delay_s`` after the oldest waiting
        one arrived for ``limit`` to be waiting (0: only those waiting now). Empty once
        stopping and empty."""
        limit = max(1, limit)
        while True:
            items: list[Item] = []
            with self._cond:
                while not self._count and not self._stopping:
                    self._cond.wait()
                if not self._count:
                    return []
                expired = self._expired(time.monotonic())
                if delay_s > 0 and limit > 1:
                    while 0 < self._count < limit and not self._stopping:
                        oldest = min(lane.queue[0].received for lane in self._ring)
                        left = oldest + delay_s - time.monotonic()
                        if left <= 0:
                            break
                        self._cond.wait(left)
                    expired += self._expired(time.monotonic())
                while self._count and len(items) < limit:
                    lane = self._ring[0]
                    items.append(self._pop(lane))
                    if lane.queue:  # still waiting: its next turn comes after the others'
                        self._ring.rotate(-1)
            for old in expired:
                self._answer_expired(old)
            if items:
                return items

    def queued_bytes(self) -> int:
        with self._cond:
            return self._bytes

    def depth(self) -> int:
        with self._cond:
            return self._count

    def sources(self) -> dict[str, dict[str, Any]]:
        """Each tracked source's figures (:meth:`Lane.figures`), by name; at most
        ``max_sources`` of them and the overflow lane."""
        with self._cond:
            return {lane.name: lane.figures() for lane in self._lanes.values()}

    def stop(self) -> None:
        """Take no more requests; :meth:`take` returns the queued ones, then None."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()

    def drain(self) -> None:
        """Answer whatever is still queued (``OVERLOADED``: stopping), never silence."""
        with self._cond:
            leftovers = [item for lane in self._ring for item in lane.queue]
            for lane in self._ring:
                lane.queue.clear()
                lane.frames = 0
            self._ring.clear()
            self._count = self._bytes = 0
        for item in leftovers:
            self.answer(
                item,
                error_result(
                    item.request.id,
                    ErrorCode.OVERLOADED,
                    f"{self.role} is stopping",
                    source=item.request.source,
                ),
            )
