"""The serving pipeline: IPC callback -> :class:`~ggvision.serving.intake.Intake` (bounded queue)
-> prepare (load, decode, the task's preprocessing) -> infer -> the task's postprocessing ->
reply. Two threads, so decoding the next image overlaps inference of this one.

Guarantees: every request gets exactly one reply on its topic (ok or a structured error); the
callback never blocks (see :mod:`ggvision.serving.intake` for admission); one thread owns the
model; a model swap happens between two requests: each request holds the model it was prepared
for until its reply, and the old model is closed only after its last request
(:meth:`Worker.retire`). A request retried with the same id runs once
(:mod:`ggvision.serving.recent`: ``recent_ids`` answers remembered for ``recent_ids_seconds``).
Admission is bounded by the bytes of the waiting images (``max_queue_bytes``), a deadline per
request (``max_queue_delay_s``) and a count (``queue_size``); 0 switches the first two off.

Fair and batched: the intake keeps a queue per request ``source`` served in turn
(:mod:`ggvision.serving.intake`), and where the model's backend runs batches
(:attr:`~ggvision.serving.models.backends.base.Backend.batchable`) and its task reads one
output, the requests waiting together (at most ``max_batch``; up to ``max_batch_delay_s`` for
more to come) are prepared one by one and run as one inference; each gets its own answer, a bad
one its own error. ``max_batch`` 1 switches batching off; 0 takes the backend's
:attr:`~ggvision.serving.models.backends.base.Backend.auto_batch`.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from ggvision.bus import Bus
from ggvision.contract import (
    ErrorCode,
    InferenceResult,
    RequestError,
    error_result,
)
from ggvision.serving.images import ImageLoader
from ggvision.serving.intake import MAX_SOURCES, Intake, Item, ReplyTopicCheck
from ggvision.serving.models.loading import ActiveModel
from ggvision.serving.recent import SECONDS, SIZE, RecentIds
from ggvision.serving.replies import Replies, ResultHook, Stats

log = logging.getLogger(__name__)

_STOP = object()
_NO_OUTPUT = object()  # an item not run in a batch: it runs alone


class Worker:
    """``role``: the component's role in log event keys, thread names and messages
    (``classifier``); ``task_options``: passed to the task's answer (a detector's label
    allow-list); ``result_task``: the ``task`` every result of this worker says (``detect``;
    None: no ``task`` key, as a classifier's results)."""

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
        role: str = "serving",
        recent_ids: int = SIZE,
        recent_ids_seconds: float = SECONDS,
        max_queue_bytes: int = 0,
        max_queue_delay_s: float = 0.0,
        task_options: Mapping[str, Any] | None = None,
        result_task: str | None = None,
        max_batch: int = 1,
        max_batch_delay_s: float = 0.0,
        max_sources: int = MAX_SOURCES,
    ) -> None:
        self.bus = bus
        self.result_topic = result_topic
        self.loader = loader
        self.top_k = top_k
        self.threshold = threshold
        self.role = role
        self.task_options: dict[str, Any] = dict(task_options or {})
        self.max_batch = max_batch
        self.max_batch_delay_s = max_batch_delay_s
        self.batches = 0  # inferences that ran more than one request
        self.batched = 0  # requests those ran
        self.replies = Replies(bus, role=role, task=result_task)
        self.intake = Intake(
            self.replies,
            result_topic=result_topic,
            queue_size=queue_size,
            reply_topic_allowed=reply_topic_allowed,
            role=role,
            recent=RecentIds(recent_ids, recent_ids_seconds),
            max_bytes=max_queue_bytes,
            max_delay_s=max_queue_delay_s,
            request_bytes=lambda request: loader.pending_bytes(request.image),
            max_sources=max_sources,
        )
        self._active = active
        self._unavailable = unavailable_reason
        self._handoff: collections.deque[list[Item] | object] = collections.deque()
        self._handoff_cond = threading.Condition()
        self._threads: list[threading.Thread] = []
        self._model_cond = threading.Condition()
        # id(backend) -> requests holding it: a task swap that keeps the backend (live learning's
        # new classes) shares the count, so retiring waits for every request on that backend.
        self._users: dict[int, int] = {}

    @property
    def stats(self) -> Stats:
        return self.replies.stats

    @property
    def on_result(self) -> ResultHook | None:
        """Called with every published result (e.g. the uplink's ``offer``)."""
        return self.replies.on_result

    @on_result.setter
    def on_result(self, hook: ResultHook | None) -> None:
        self.replies.on_result = hook

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
            idle = self._model_cond.wait_for(lambda: id(old.backend) not in self._users, timeout)
        if not idle:
            log.warning(
                "old model still in use; not closed", extra={"event": f"{self.role}.retire"}
            )
            return False
        try:
            old.backend.close()
        except Exception:  # boundary: closing is best effort
            log.exception("closing the old model failed", extra={"event": f"{self.role}.retire"})
        return True

    def _acquire(self) -> ActiveModel | None:
        with self._model_cond:
            active = self._active
            if active is not None:
                key = id(active.backend)
                self._users[key] = self._users.get(key, 0) + 1
            return active

    def _release(self, active: ActiveModel) -> None:
        with self._model_cond:
            key = id(active.backend)
            left = self._users.get(key, 0) - 1
            if left > 0:
                self._users[key] = left
            else:
                self._users.pop(key, None)
                self._model_cond.notify_all()

    def configure(
        self,
        *,
        top_k: int,
        threshold: float,
        recent_ids: int | None = None,
        recent_ids_seconds: float | None = None,
        queue_size: int | None = None,
        max_queue_bytes: int | None = None,
        max_queue_delay_s: float | None = None,
        task_options: Mapping[str, Any] | None = None,
        max_batch: int | None = None,
        max_batch_delay_s: float | None = None,
        max_sources: int | None = None,
    ) -> None:
        self.top_k, self.threshold = top_k, threshold
        if task_options is not None:
            self.task_options = dict(task_options)
        if max_batch is not None:
            self.max_batch = max_batch
        if max_batch_delay_s is not None:
            self.max_batch_delay_s = max_batch_delay_s
        if (
            queue_size is not None
            or max_queue_bytes is not None
            or max_queue_delay_s is not None
            or max_sources is not None
        ):
            self.intake.configure(
                queue_size=self.intake.queue_size if queue_size is None else queue_size,
                max_bytes=max_queue_bytes,
                max_delay_s=max_queue_delay_s,
                max_sources=max_sources,
            )
        recent = self.intake.recent
        if recent_ids is not None or recent_ids_seconds is not None:
            recent.configure(
                size=recent.size if recent_ids is None else recent_ids,
                seconds=recent.seconds if recent_ids_seconds is None else recent_ids_seconds,
            )

    # --- intake (IPC callback thread) ----------------------------------------------------------
    def on_message(self, topic: str, payload: bytes | dict[str, Any]) -> None:
        """Decode, validate, enqueue. Never blocks, never raises."""
        self.intake.on_message(topic, payload)

    def queue_depth(self) -> int:
        return self.intake.depth()

    def batch_limit(self) -> int:
        """How many waiting requests the next inference may take: ``max_batch`` (0: the
        backend's own choice) where the active model's backend runs batches and its task reads
        one output (detection reads every output: unbatched), else 1."""
        active = self._active
        if active is None or active.task.all_outputs or not active.backend.batchable:
            return 1
        limit = self.max_batch or active.backend.auto_batch
        return max(1, limit)

    # --- threads -------------------------------------------------------------------------------
    def start(self) -> None:
        for target, name in (
            (self._prepare_loop, f"{self.role}-prepare"),
            (self._infer_loop, f"{self.role}-infer"),
        ):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop taking requests; finish those accepted (within ``timeout``), then stop."""
        self.intake.stop()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        # Anything still queued past the deadline gets an answer, never silence.
        self.intake.drain()
        self.loader.close()

    def _prepare_loop(self) -> None:
        while True:
            limit = self.batch_limit()
            if limit > 1:
                # A batch is taken when the inference thread is ready for it, so it holds what
                # waited meanwhile (preparing it still overlaps the running inference).
                with self._handoff_cond:
                    while self._handoff:
                        self._handoff_cond.wait()
            batch = self.intake.take_batch(limit, self.max_batch_delay_s if limit > 1 else 0.0)
            if not batch:
                break
            for item in batch:
                try:
                    self._prepare(item)
                except Exception as exc:  # boundary
                    log.exception("prepare failed", extra={"event": f"{self.role}.prepare_error"})
                    item.error = RequestError(ErrorCode.INTERNAL, f"prepare failed: {exc}")
            with self._handoff_cond:
                # At most one prepared batch waits: preparation runs one batch ahead.
                while len(self._handoff) >= 1:
                    self._handoff_cond.wait()
                self._handoff.append(batch)
                self._handoff_cond.notify_all()
        with self._handoff_cond:
            self._handoff.append(_STOP)
            self._handoff_cond.notify_all()

    def _prepare(self, item: Item) -> None:
        start = time.monotonic()
        item.timing.queue = (start - item.received) * 1000
        active = self._acquire()
        if active is None:
            item.error = RequestError(ErrorCode.MODEL_UNAVAILABLE, self._unavailable)
            return
        image: Any = None
        try:
            image = self.loader.load(item.request.image, active.task.plane_encoder(active.model))
            decoded = time.monotonic()
            item.timing.decode = (decoded - start) * 1000
            item.tensor, item.context = active.task.prepare(image, active.model)
            item.timing.preprocess = (time.monotonic() - decoded) * 1000
            item.active = active
        except RequestError as exc:
            item.error = exc
        except ValueError as exc:  # preprocess: an image it cannot use (e.g. 1x1 pixels)
            item.error = RequestError(ErrorCode.IMAGE_DECODE_FAILED, str(exc))
        finally:
            image = None  # the decoded pixels: dropped before the loader trims the heap
            self.loader.release()
            if item.active is None:
                self._release(active)

    def _infer_loop(self) -> None:
        while True:
            with self._handoff_cond:
                while not self._handoff:
                    self._handoff_cond.wait()
                batch = self._handoff.popleft()
                self._handoff_cond.notify_all()
            if batch is _STOP:
                return
            assert isinstance(batch, list)
            outputs = self._run_batch(batch) if len(batch) > 1 else {}
            for item in batch:
                self._finish(item, outputs.get(id(item), _NO_OUTPUT))

    def _finish(self, item: Item, output: Any) -> None:
        """Answer ``item``: its error, or the task's answer to ``output`` (run alone when it
        is ``_NO_OUTPUT``)."""
        try:
            result = self._infer(item, output)
        except Exception as exc:  # boundary: one bad request never stops the service
            log.exception(
                "inference failed",
                extra={"event": f"{self.role}.infer_error", "id": item.request.id},
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
        self.intake.answer(item, result)

    def _run_batch(self, batch: list[Item]) -> dict[int, Any]:
        """One inference per group of prepared items on the same batching backend: id(item) ->
        its output. A batch that fails is logged and its items run alone (each gets its own
        answer or error)."""
        groups: dict[int, list[Item]] = {}
        for item in batch:
            active = item.active
            if item.error is not None or active is None or item.tensor is None:
                continue
            if active.task.all_outputs or not active.backend.batchable:
                continue
            groups.setdefault(id(active.backend), []).append(item)
        outputs: dict[int, Any] = {}
        for items in groups.values():
            if len(items) < 2:
                continue
            backend = items[0].active.backend  # type: ignore[union-attr]
            tensors: list[np.ndarray] = [i.tensor for i in items]  # type: ignore[misc]
            t0 = time.monotonic()
            try:
                results = backend.infer_batch(tensors)
            except Exception:  # boundary: the requests run one by one instead
                log.warning(
                    "a batch of %d failed; running its requests one by one",
                    len(items),
                    exc_info=True,
                    extra={"event": f"{self.role}.batch_error"},
                )
                continue
            took = (time.monotonic() - t0) * 1000
            self.batches += 1
            self.batched += len(items)
            for item, output in zip(items, results, strict=True):
                item.timing.inference = took
                outputs[id(item)] = output
        return outputs

    def _infer(self, item: Item, output: Any = _NO_OUTPUT) -> InferenceResult:
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
        task = active.task
        if output is _NO_OUTPUT:
            t0 = time.monotonic()
            output = (
                active.backend.infer_all(item.tensor)
                if task.all_outputs
                else active.backend.infer(item.tensor)
            )
            item.timing.inference = (time.monotonic() - t0) * 1000
        answer = task.answer(
            output,
            active.model,
            top_k=req.top_k or self.top_k,
            threshold=self.threshold if req.threshold is None else req.threshold,
            context=item.context,
            options=self.task_options,
        )
        return InferenceResult(
            id=req.id,
            status="ok",
            predictions=answer.predictions,
            output=answer.output,
            detections=answer.detections,
            model=active.info,
            timing_ms=item.timing,
            source=req.source,
        )

    def sources(self) -> dict[str, dict[str, Any]]:
        """Each source's figures (results/s, latency p50/p95, dropped; bounded like the
        lanes: :meth:`~ggvision.serving.intake.Intake.sources`)."""
        return self.intake.sources()

    def snapshot(self) -> tuple[dict[str, Any], list[float]]:
        """The counters and the recent latencies (ms), consistent with each other."""
        return self.replies.snapshot()
