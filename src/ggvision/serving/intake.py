"""Intake: the IPC callback -> a bounded queue, with admission.

The callback only decodes, validates and enqueues: it never blocks and never raises. Every
request it cannot take is answered at once: an invalid one with its error, and when the queue is
full ``OVERLOADED`` (a request), or the *oldest* queued camera frame is dropped for the new one
(answered ``OVERLOADED`` too, and counted). While stopping, everything is answered
``OVERLOADED``.

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
from typing import Any

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


class Intake:
    """The bounded queue of accepted requests and the callback that fills it. ``role``: the
    component's role in messages and event keys (``classifier``); ``recent``: the recent ids
    (default: :class:`~ggvision.serving.recent.RecentIds` with its default bounds)."""

    def __init__(
        self,
        replies: Replies,
        *,
        result_topic: str,
        queue_size: int,
        reply_topic_allowed: ReplyTopicCheck,
        role: str,
        recent: RecentIds | None = None,
    ) -> None:
        self.replies = replies
        self.recent = recent if recent is not None else RecentIds()
        self.result_topic = result_topic
        self.queue_size = queue_size
        self.reply_topic_allowed = reply_topic_allowed
        self.role = role
        self._queue: collections.deque[Item] = collections.deque()
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

    def admit(self, item: Item) -> None:
        """Queue ``item``, or answer ``OVERLOADED`` (for it, or for the oldest frame it
        replaces)."""
        rejected: Item | None = None
        with self._cond:
            if self._stopping:
                rejected = item
            elif len(self._queue) < self.queue_size:
                self._queue.append(item)
                self._cond.notify()
            elif item.request.is_frame:
                oldest = next((i for i in self._queue if i.request.is_frame), None)
                if oldest is not None:
                    self._queue.remove(oldest)
                    self._queue.append(item)
                    self.replies.count(dropped_frames=1)
                rejected = oldest if oldest is not None else item
            else:
                rejected = item
        if rejected is not None:
            self.replies.count(overloaded=1)
            msg = (
                f"{self.role} is stopping"
                if self._stopping
                else "frame dropped: a newer frame replaced it"
                if rejected is not item
                else f"queue full ({self.queue_size} waiting); retry later"
            )
            self.answer(
                rejected,
                error_result(
                    rejected.request.id, ErrorCode.OVERLOADED, msg, source=rejected.request.source
                ),
            )

    def answer(self, item: Item, result: InferenceResult) -> None:
        """Publish the one answer of an admitted ``item`` (ending its claim in the recent
        ids first, so a retry arriving meanwhile is answered from there)."""
        self.replies.stamp(result)
        if item.key is not None:
            self.recent.finish(item.key, result)
        self.replies.reply(result, item.reply_topic)

    # --- the consumer --------------------------------------------------------------------------
    def take(self) -> Item | None:
        """The oldest queued item; waits for one. None once stopping and empty."""
        with self._cond:
            while not self._queue and not self._stopping:
                self._cond.wait()
            if not self._queue:
                return None
            return self._queue.popleft()

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
