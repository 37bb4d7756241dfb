"""Recent request ids: a request retried with the same id is answered once and run once.

A client that got no answer in time sends its request again under the same id (the requester
does, see docs/messages.md "Delivery and retries"). Before a valid request is queued the intake
asks :meth:`RecentIds.claim` whether it has seen it:

``NEW``
    neither queued, in flight nor answered recently: it is queued and runs.
``RUNNING``
    the same request is queued or in flight: the duplicate is *attached* to it. The one answer
    that request publishes (same id, same topic) answers both; nothing more is published and
    the model runs once.
``ANSWERED``
    the same request was answered ``ok`` recently: that result is published again, unchanged
    (its ``timing_ms`` are the first run's), without running the model.

"The same request" is its id *and* a digest of the whole validated request with its reply
topic: another client's request that happens to reuse an id ("req-1") runs and gets its own
answer, never someone else's. Only ``ok`` results are remembered: an error answer
(``OVERLOADED``, ``MODEL_UNAVAILABLE``, a missing file, ...) may not recur, so its retry runs
again; invalid requests are answered before they get here and never remembered, nor are
requests without an id (the generated one is never sent again).

Bounded: at most ``size`` answers, none older than ``seconds``, at most ``max_bytes`` of them
in all (the oldest go first); ``size`` 0 remembers no answers (duplicates in flight are still
attached). The requests running are bounded by the queue and the stages, each finished exactly
once (:meth:`RecentIds.finish`). Kept in memory only: a restarted classifier remembers nothing,
so a retry after a crash runs again. Thread-safe.
"""

from __future__ import annotations

import collections
import enum
import hashlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ggvision.contract import InferenceRequest, InferenceResult, result_bytes

SIZE = 1024  # answers remembered
SECONDS = 60.0  # for this long at most
MAX_BYTES = 8 << 20  # and this much JSON in all (a result of 1000 predictions is ~60 KB)

Key = bytes


class Seen(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    ANSWERED = "answered"


@dataclass(frozen=True, slots=True)
class Claim:
    """What :meth:`RecentIds.claim` found. ``key``: finish the request with it (NEW and
    remembered); ``answer``: the result to publish again (ANSWERED)."""

    seen: Seen
    key: Key | None = None
    answer: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class _Answer:
    at: float
    data: bytes  # the result's JSON


class RecentIds:
    def __init__(
        self,
        size: int = SIZE,
        seconds: float = SECONDS,
        *,
        max_bytes: int = MAX_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.size, self.seconds, self.max_bytes = size, seconds, max_bytes
        self._clock = clock
        self._lock = threading.Lock()
        self._running: set[Key] = set()
        self._answers: collections.OrderedDict[Key, _Answer] = collections.OrderedDict()
        self._bytes = 0

    def configure(self, *, size: int, seconds: float) -> None:
        with self._lock:
            self.size, self.seconds = size, seconds
            self._trim(self._clock())

    @staticmethod
    def key(request: InferenceRequest, reply_topic: str) -> Key:
        """The request's identity: its id and content and where it is answered."""
        h = hashlib.blake2b(digest_size=16)
        h.update(request.model_dump_json().encode())
        h.update(b"\0" + reply_topic.encode())
        return h.digest()

    def claim(self, request: InferenceRequest, reply_topic: str) -> Claim:
        """NEW (then the caller runs it and calls :meth:`finish` with the key), RUNNING or
        ANSWERED (then the caller publishes ``answer``)."""
        key = self.key(request, reply_topic)
        with self._lock:
            self._trim(self._clock())
            if key in self._running:
                return Claim(Seen.RUNNING)
            answer = self._answers.get(key)
            if answer is not None:
                return Claim(Seen.ANSWERED, answer=json.loads(answer.data))
            self._running.add(key)
        return Claim(Seen.NEW, key=key)

    def finish(self, key: Key, result: InferenceResult, data: bytes | None = None) -> None:
        """The request of ``key`` is answered with ``result``: remember it when ``ok``.
        ``data``: ``result`` already serialized (:func:`~ggvision.contract.result_bytes`)."""
        if result.status != "ok":
            data = None
        elif data is None:
            try:
                data = result_bytes(result)
            except ValueError:  # it does not serialize (its reply says so): not remembered
                data = None
        with self._lock:
            self._running.discard(key)
            if data is None or self.size <= 0 or len(data) > self.max_bytes:
                return
            old = self._answers.pop(key, None)
            if old is not None:
                self._bytes -= len(old.data)
            self._answers[key] = _Answer(self._clock(), data)
            self._bytes += len(data)
            self._trim(self._clock())

    def _trim(self, now: float) -> None:
        answers = self._answers
        while answers:
            key, oldest = next(iter(answers.items()))
            if (
                len(answers) <= self.size
                and self._bytes <= self.max_bytes
                and now - oldest.at <= self.seconds
            ):
                return
            del answers[key]
            self._bytes -= len(oldest.data)

    def running(self) -> int:
        with self._lock:
            return len(self._running)

    def remembered(self) -> int:
        with self._lock:
            return len(self._answers)
