"""The classifier pipeline: IPC callback -> bounded queue -> prepare (load, decode, preprocess)
-> infer -> reply. Two threads, so decoding the next image overlaps inference of this one.

Guarantees: every request gets exactly one reply on its topic (ok or a structured error); the
callback never blocks (a full queue answers ``OVERLOADED`` for requests and drops the *oldest*
camera frame, which is answered ``OVERLOADED`` too and counted); one thread owns the model; a model
swap happens between two requests: each request holds the model it was prepared for until its
reply, and the old model is closed only after its last request (:meth:`Classifier.retire`).
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ggvision.bus import Bus
from ggvision.contract import (
    ErrorCode,
    InferenceRequest,
    InferenceResult,
    ModelInfo,
    Prediction,
    RequestError,
    Timing,
    decode_payload,
    error_result,
    parse_request,
    peek_envelope,
    result_json,
)
from ggvision_classifier.backends.base import Backend
from ggvision_classifier.images import ImageLoader
from ggvision_classifier.modelstore import Model
from ggvision_classifier.postprocess import topk
from ggvision_classifier.preprocess import preprocess

log = logging.getLogger(__name__)


@dataclass(slots=True)
class ActiveModel:
    """A loaded, warmed backend and what a result says about it."""

    model: Model
    backend: Backend
    info: ModelInfo

    @classmethod
    def of(cls, model: Model, backend: Backend) -> ActiveModel:
        m = model.manifest
        return cls(
            model,
            backend,
            ModelInfo(name=m.name, version=m.version, backend=backend.name, precision=m.precision),
        )


@dataclass(slots=True)
class _Item:
    request: InferenceRequest
    reply_topic: str
    received: float
    timing: Timing = field(default_factory=Timing)
    tensor: np.ndarray | None = None
    active: ActiveModel | None = None
    error: RequestError | None = None


@dataclass
class Stats:
    received: int = 0
    ok: int = 0
    errors: dict[str, int] = field(default_factory=lambda: collections.defaultdict(int))
    dropped_frames: int = 0
    overloaded: int = 0
    publish_failures: int = 0

    def snapshot(self) -> dict[str, Any]:
        return {
            "received": self.received,
            "ok": self.ok,
            "errors": dict(self.errors),
            "dropped_frames": self.dropped_frames,
            "overloaded": self.overloaded,
            "publish_failures": self.publish_failures,
        }


ReplyTopicCheck = Callable[[str], bool]
ResultHook = Callable[[InferenceResult], None]
_STOP = object()


class Classifier:
    def __init__(
        self,
        bus: Bus,
        *,
        result_topic: str,
        loader: ImageLoader,
        queue_size: int,
        top_k: int,
        threshold: float,
        reply_topic_allowed: ReplyTopicCheck,
        active: ActiveModel | None = None,
        unavailable_reason: str = "no model is loaded",
    ) -> None:
        self.bus = bus
        self.result_topic = result_topic
        self.loader = loader
        self.queue_size = queue_size
        self.top_k = top_k
        self.threshold = threshold
        self.reply_topic_allowed = reply_topic_allowed
        self.stats = Stats()
        self._active = active
        self._unavailable = unavailable_reason
        self._queue: collections.deque[_Item] = collections.deque()
        self._cond = threading.Condition()
        self._handoff: collections.deque[_Item | object] = collections.deque()
        self._handoff_cond = threading.Condition()
        self._stopping = False
        self._threads: list[threading.Thread] = []
        self._stats_lock = threading.Lock()
        self._latencies: collections.deque[float] = collections.deque(maxlen=1000)
        self._model_cond = threading.Condition()
        self._users: dict[int, int] = {}  # id(ActiveModel) -> requests holding it
        self.on_result: ResultHook | None = None

    # --- model ---------------------------------------------------------------------------------
    @property
    def active(self) -> ActiveModel | None:
        return self._active

    def swap_model(
        self, active: ActiveModel | None, reason: str = "no model is loaded"
    ) -> ActiveModel | None:
        """Serve the next prepared request with ``active``; returns the old model, which still
        serves the requests already prepared for it (close it with :meth:`retire`)."""
        with self._model_cond:
            old, self._active = self._active, active
            self._unavailable = reason
        return old

    def retire(self, old: ActiveModel | None, timeout: float = 60.0) -> bool:
        """Wait until no request holds ``old``, then close its backend. False on timeout (the
        backend is left to the garbage collector then)."""
        if old is None:
            return True
        with self._model_cond:
            idle = self._model_cond.wait_for(lambda: id(old) not in self._users, timeout)
        if not idle:
            log.warning("old model still in use; not closed", extra={"event": "classifier.retire"})
            return False
        try:
            old.backend.close()
        except Exception:  # boundary: closing is best effort
            log.exception("closing the old model failed", extra={"event": "classifier.retire"})
        return True

    def _acquire(self) -> ActiveModel | None:
        with self._model_cond:
            active = self._active
            if active is not None:
                self._users[id(active)] = self._users.get(id(active), 0) + 1
            return active

    def _release(self, active: ActiveModel) -> None:
        with self._model_cond:
            left = self._users.get(id(active), 0) - 1
            if left > 0:
                self._users[id(active)] = left
            else:
                self._users.pop(id(active), None)
                self._model_cond.notify_all()

    def configure(self, *, top_k: int, threshold: float) -> None:
        self.top_k, self.threshold = top_k, threshold

    # --- intake (IPC callback thread) -------------------------------------------------------------
    def on_message(self, topic: str, payload: bytes | dict[str, Any]) -> None:
        """Decode, validate, enqueue. Never blocks, never raises."""
        received = time.monotonic()
        with self._stats_lock:
            self.stats.received += 1
        rid, reply, source = peek_envelope(payload if isinstance(payload, dict) else None)
        try:
            obj = decode_payload(payload)
            rid, reply, source = peek_envelope(obj)
            if reply is not None and not self.reply_topic_allowed(reply):
                reply = None
                raise RequestError(
                    ErrorCode.INVALID_REQUEST,
                    "reply_topic is not allowed by this component's recipe",
                )
            request = parse_request(obj if obj.get("id") is not None else {**obj, "id": rid})
        except RequestError as exc:
            self._reply(
                error_result(rid, exc.code, exc.message, source=source), reply or self.result_topic
            )
            return
        except Exception as exc:  # boundary
            log.exception("request intake failed", extra={"event": "classifier.intake_error"})
            self._reply(
                error_result(rid, ErrorCode.INTERNAL, f"intake failed: {exc}", source=source),
                reply or self.result_topic,
            )
            return
        item = _Item(request, request.reply_topic or self.result_topic, received)
        rejected: _Item | None = None
        with self._cond:
            if self._stopping:
                rejected = item
            elif len(self._queue) < self.queue_size:
                self._queue.append(item)
                self._cond.notify()
            elif request.is_frame:
                oldest = next((i for i in self._queue if i.request.is_frame), None)
                if oldest is not None:
                    self._queue.remove(oldest)
                    self._queue.append(item)
                    with self._stats_lock:
                        self.stats.dropped_frames += 1
                rejected = oldest if oldest is not None else item
            else:
                rejected = item
        if rejected is not None:
            with self._stats_lock:
                self.stats.overloaded += 1
            msg = (
                "classifier is stopping"
                if self._stopping
                else "frame dropped: a newer frame replaced it"
                if rejected is not item
                else f"queue full ({self.queue_size} waiting); retry later"
            )
            self._reply(
                error_result(
                    rejected.request.id, ErrorCode.OVERLOADED, msg, source=rejected.request.source
                ),
                rejected.reply_topic,
            )

    def queue_depth(self) -> int:
        with self._cond:
            return len(self._queue)

    # --- threads ---------------------------------------------------------------------------------
    def start(self) -> None:
        for target, name in (
            (self._prepare_loop, "classifier-prepare"),
            (self._infer_loop, "classifier-infer"),
        ):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop taking requests; finish those accepted (within ``timeout``), then stop."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        # Anything still queued past the deadline gets an answer, never silence.
        with self._cond:
            leftovers, self._queue = list(self._queue), collections.deque()
        for item in leftovers:
            self._reply(
                error_result(
                    item.request.id,
                    ErrorCode.OVERLOADED,
                    "classifier is stopping",
                    source=item.request.source,
                ),
                item.reply_topic,
            )
        self.loader.close()

    def _prepare_loop(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._stopping:
                    self._cond.wait()
                if not self._queue:
                    break
                item = self._queue.popleft()
            try:
                self._prepare(item)
            except Exception as exc:  # boundary
                log.exception("prepare failed", extra={"event": "classifier.prepare_error"})
                item.error = RequestError(ErrorCode.INTERNAL, f"prepare failed: {exc}")
            with self._handoff_cond:
                # At most one prepared item waits: preparation runs one request ahead.
                while len(self._handoff) >= 1:
                    self._handoff_cond.wait()
                self._handoff.append(item)
                self._handoff_cond.notify_all()
        with self._handoff_cond:
            self._handoff.append(_STOP)
            self._handoff_cond.notify_all()

    def _prepare(self, item: _Item) -> None:
        start = time.monotonic()
        item.timing.queue = (start - item.received) * 1000
        active = self._acquire()
        if active is None:
            item.error = RequestError(ErrorCode.MODEL_UNAVAILABLE, self._unavailable)
            return
        try:
            image = self.loader.load(item.request.image)
            decoded = time.monotonic()
            item.timing.decode = (decoded - start) * 1000
            item.tensor = preprocess(image, active.model.manifest)
            item.timing.preprocess = (time.monotonic() - decoded) * 1000
            item.active = active
        except RequestError as exc:
            item.error = exc
        except ValueError as exc:  # preprocess: an image it cannot use (e.g. 1x1 pixels)
            item.error = RequestError(ErrorCode.IMAGE_DECODE_FAILED, str(exc))
        finally:
            if item.active is None:
                self._release(active)

    def _infer_loop(self) -> None:
        while True:
            with self._handoff_cond:
                while not self._handoff:
                    self._handoff_cond.wait()
                item = self._handoff.popleft()
                self._handoff_cond.notify_all()
            if item is _STOP:
                return
            assert isinstance(item, _Item)
            try:
                result = self._infer(item)
            except Exception as exc:  # boundary: one bad request never stops the service
                log.exception(
                    "inference failed",
                    extra={"event": "classifier.infer_error", "id": item.request.id},
                )
                result = error_result(
                    item.request.id,
                    ErrorCode.INTERNAL,
                    f"inference failed: {type(exc).__name__}: {exc}",
                    source=item.request.source,
                )
            finally:
                if item.active is not None:
                    self._release(item.active)
            result.timing_ms.total = (time.monotonic() - item.received) * 1000
            self._reply(result, item.reply_topic)

    def _infer(self, item: _Item) -> InferenceResult:
        req = item.request
        if item.error is not None:
            info = self._active.info if self._active else None
            return error_result(
                req.id,
                item.error.code,
                item.error.message,
                source=req.source,
                model=info,
                timing=item.timing,
            )
        active = item.active
        assert active is not None and item.tensor is not None
        t0 = time.monotonic()
        scores = active.backend.infer(item.tensor)
        item.timing.inference = (time.monotonic() - t0) * 1000
        k = req.top_k or self.top_k
        threshold = self.threshold if req.threshold is None else req.threshold
        labels = active.model.labels
        preds = [
            Prediction(label=labels[i], index=i, score=round(float(p), 6))
            for i, p in topk(scores, k, threshold, active.model.manifest.output.kind)
        ]
        return InferenceResult(
            id=req.id,
            status="ok",
            predictions=preds,
            model=active.info,
            timing_ms=item.timing,
            source=req.source,
        )

    # --- replies ---------------------------------------------------------------------------------
    def _reply(self, result: InferenceResult, topic: str) -> None:
        with self._stats_lock:
            if result.status == "ok":
                self.stats.ok += 1
                self._latencies.append(result.timing_ms.total)
            elif result.error is not None:
                self.stats.errors[result.error.code.value] += 1
        try:
            fut = self.bus.publish_json(topic, result_json(result))
        except Exception:
            log.exception(
                "could not publish a result",
                extra={"event": "classifier.publish_error", "id": result.id},
            )
            with self._stats_lock:
                self.stats.publish_failures += 1
            return
        rid = result.id
        fut.add_done_callback(lambda f: self._published(f, rid))
        hook = self.on_result
        if hook is not None:
            try:
                hook(result)
            except Exception:  # boundary: an uplink problem never breaks the replies
                log.exception("result hook failed", extra={"event": "classifier.hook_error"})

    def _published(self, fut: Future[Any], rid: str) -> None:
        exc = fut.exception()
        if exc is not None:
            with self._stats_lock:
                self.stats.publish_failures += 1
            log.error(
                "result %s was not published: %s",
                rid,
                exc,
                extra={"event": "classifier.publish_failed", "id": rid},
            )

    def snapshot(self) -> tuple[dict[str, Any], list[float]]:
        """The counters and the recent latencies (ms), consistent with each other."""
        with self._stats_lock:
            return self.stats.snapshot(), list(self._latencies)
