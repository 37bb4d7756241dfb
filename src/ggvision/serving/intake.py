"""Intake: the IPC callback -> a bounded queue, with admission.

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

A valid request whose id was seen recently is not run twice (:mod:`ggvision.serving.recent`):
the same request queued or in flight answers its duplicate too (nothing more is published), one
answered ``ok`` recently is answered again with that result. Every admitted request's one
answer goes through :meth:`Intake.answer`, which also ends its claim.
"""

from __future__ import annotations

import collections
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

log = logging.getLogger(__name__)

ReplyTopicCheck = Callable[[str], bool]
RequestBytes = Callable[[InferenceRequest], int]

DEADLINE_EXCEEDED: Final = "deadline exceeded"  # the start of a deadline's OVERLOADED message


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


class Intake:
    """The bounded queue of accepted requests and the callback that fills it. ``role``: the
    component's role in messages and event keys (``classifier``); ``recent``: the recent ids
    (default: :class:`~ggvision.serving.recent.RecentIds` with its default bounds);
    ``max_bytes``, ``max_delay_s``, ``queue_size``: the bounds (module doc; 0: no byte bound, no
    deadline); ``request_bytes``: a request's bytes (default: none counted). Never blocks."""

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
        self._queue: collections.deque[Item] = collections.deque()
        self._bytes = 0  # of the queued items
        self._cond = threading.Condition()
        self._stopping = False

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
        self, *, queue_size: int, max_bytes: int | None = None, max_delay_s: float | None = None
    ) -> None:
        """New bounds, for the requests admitted from now on (a deployment's update)."""
        with self._cond:
            self.queue_size = queue_size
            if max_bytes is not None:
                self.max_bytes = max_bytes
            if max_delay_s is not None:
                self.max_delay_s = max_delay_s

    def _full(self, item: Item) -> str | None:
        """Why ``item`` does not fit (None: it does). Called with the lock held."""
        n = len(self._queue)
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
        """Take the queued items past their deadline (the oldest first: the queue is in arrival
        order). Called with the lock held."""
        out: list[Item] = []
        if not self.max_delay_s:
            return out
        while self._queue and now - self._queue[0].received > self.max_delay_s:
            old = self._queue.popleft()
            self._bytes -= old.bytes
            out.append(old)
        return out

    def admit(self, item: Item) -> None:
        """Queue ``item``, or answer ``OVERLOADED`` (for it, or for the oldest frames it
        replaces); requests past their deadline are answered on the way."""
        rejected: Item | None = None
        dropped: list[Item] = []
        reason: str | None = None
        with self._cond:
            expired = self._expired(time.monotonic())
            if self._stopping:
                rejected, reason = item, f"{self.role} is stopping"
            elif (reason := self._full(item)) is None:
                self._push(item)
            elif item.request.is_frame:
                # Drop-oldest: older frames make room for the new one (requests are kept).
                for old in [i for i in self._queue if i.request.is_frame]:
                    self._queue.remove(old)
                    self._bytes -= old.bytes
                    dropped.append(old)
                    if self._full(item) is None:
                        break
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
            self._overloaded(old, "frame dropped: a newer frame replaced it")
        if rejected is not None and reason is not None:
            self._overloaded(rejected, reason)

    def _push(self, item: Item) -> None:
        self._queue.append(item)
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
        self.replies.reply(result, item.reply_topic, data)

    # --- the consumer --------------------------------------------------------------------------
    def take(self) -> Item | None:
        """The oldest queued item still within its deadline (those past it are answered);
        waits for one. None once stopping and empty."""
        while True:
            item: Item | None = None
            with self._cond:
                while not self._queue and not self._stopping:
                    self._cond.wait()
                if not self._queue:
                    return None
                expired = self._expired(time.monotonic())
                if self._queue:
                    item = self._queue.popleft()
                    self._bytes -= item.bytes
            for old in expired:
                self._answer_expired(old)
            if item is not None:
                return item

    def queued_bytes(self) -> int:
        with self._cond:
            return self._bytes

    def depth(self) -> int:
        with self._cond:
            return len(self._queue)

    def stop(self) -> None:
        """Take no more requests; :meth:`take` returns the queued ones, then None."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()

    def drain(self) -> None:
        """Answer whatever is still queued (``OVERLOADED``: stopping), never silence."""
        with self._cond:
            leftovers, self._queue = list(self._queue), collections.deque()
            self._bytes = 0
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
