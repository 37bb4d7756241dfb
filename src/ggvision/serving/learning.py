"""Live learning: classes taught over IPC to a running model component whose model is an
embedding variant (weight imprinting, :mod:`ggvision.serving.imprint`), no restart.

Messages on the learning topic (``learning.topic``, default ``local/learn``; a grant of its own,
so a component allowed to ask is not thereby allowed to teach)::

    {"id", "op": "add", "label", "image": <as in a request: path / data / frame>}
    {"id", "op": "remove", "label"}     {"id", "op": "list"}     {"id", "op": "reset"}

Each gets exactly one reply on ``reply_topic`` (when the recipe allows it) or
``learning.replyTopic`` (docs/messages.md). The IPC callback only decodes, validates and
enqueues (a full queue answers ``OVERLOADED``); one thread runs the operations in order: an
``add`` checks the label and limits, decodes the image (one that fails is refused, the class
untouched), embeds it on its own backend of the serving model (the worker's stays its own
thread's), adds the shot, persists the store (atomic), and swaps the task answering requests
(:meth:`Learner.apply`) between two requests, as a model swap, under the swapper's lock: the
next request is answered with the new class, none is lost. The store (embeddings, not images)
is kept in the component's work directory, survives restarts and component updates.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from ggvision.bus import Bus
from ggvision.config import ConfigModel, publishes, subscribes
from ggvision.contract import RequestError, decode_payload, parse_request, scan_envelope
from ggvision.serving.images import ImageLoader
from ggvision.serving.imprint import ClassStore, LearnError, Limits
from ggvision.serving.intake import ReplyTopicCheck
from ggvision.serving.models.backends.base import Backend
from ggvision.serving.models.loading import ActiveModel
from ggvision.serving.tasks.embedding import EmbeddingTask
from ggvision.serving.worker import Worker

log = logging.getLogger(__name__)

STORE_FILE = Path("learned") / "classes.npz"
OPS = ("add", "remove", "list", "reset")
_STOP = object()


class LearningConfig(ConfigModel):
    """The ``learning`` section of a model component's configuration."""

    enabled: bool = Field(True, description="take learning messages (an embedding model only)")
    topic: str = Field("local/learn", min_length=1, json_schema_extra=subscribes())
    reply_topic: str = Field("local/learn/reply", min_length=1, json_schema_extra=publishes())
    mode: Literal["extend", "replace"] = Field(
        "extend",
        description="extend: learned classes beside ImageNet's; replace: only learned classes",
    )
    max_shots: int = Field(
        50, ge=1, le=10_000, description="shots kept per class (5 KB of embedding each)"
    )
    max_classes: int = Field(100, ge=1, le=10_000, description="learned classes in total")
    max_label_length: int = Field(64, ge=1, le=256)
    queue_size: int = Field(32, ge=1, le=10_000)

    def limits(self) -> Limits:
        return Limits(self.max_shots, self.max_classes, self.max_label_length)


class Learner:
    """Owns the class store, its file, the learning queue and thread. ``swap_lock``: the model
    swapper's lock (held while the serving task is swapped); ``make_backend``: a second backend
    of the serving model, for the shots' embeddings."""

    def __init__(
        self,
        bus: Bus,
        worker: Worker,
        cfg: LearningConfig,
        *,
        work_dir: Path,
        loader: ImageLoader,
        swap_lock: threading.Lock,
        make_backend: Callable[[ActiveModel], Backend],
        reply_topic_allowed: ReplyTopicCheck,
        role: str,
    ) -> None:
        self.bus = bus
        self.worker = worker
        self.cfg = cfg
        self.path = Path(work_dir) / STORE_FILE
        self.loader = loader
        self.swap_lock = swap_lock
        self.make_backend = make_backend
        self.reply_topic_allowed = reply_topic_allowed
        self.role = role
        self.store: ClassStore | None = None
        self._queue: collections.deque[tuple[dict[str, Any], str] | object] = collections.deque()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._extractor: tuple[ActiveModel, Backend] | None = None
        self._load()

    # --- the store -----------------------------------------------------------------------------
    def _load(self) -> None:
        for stray in self.path.parent.glob(f".{self.path.name}.*.tmp"):
            stray.unlink(missing_ok=True)  # a save a crash interrupted: never read
        if not self.path.is_file():
            return
        try:
            self.store = ClassStore.load(self.path, limits=self.cfg.limits())
        except LearnError as exc:
            bad = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
            self.path.rename(bad)
            log.error(
                "learned classes unreadable, kept aside as %s: %s",
                bad.name,
                exc,
                extra={"event": f"{self.role}.learn_corrupt"},
            )
            return
        log.info(
            "learned classes loaded: %s",
            self.store.counts(),
            extra={"event": f"{self.role}.learn_loaded"},
        )

    def apply(self, active: ActiveModel) -> ActiveModel:
        """``active`` answering with the learned classes too (itself when its model is not an
        embedding model, or nothing is learned for its embedding size)."""
        task = active.task
        if not isinstance(task, EmbeddingTask):
            return active
        store = self.store
        live = store.classes() if store is not None and store.dim == task.dim else None
        return ActiveModel(
            active.model, active.backend, active.info, task.with_classes(live, self.cfg.mode)
        )

    def summary(self) -> dict[str, Any]:
        """The learned classes counted, for the status report (``learning``) and the list op:
        ``enabled``, ``classes`` (how many), ``shots`` (in total), ``mode`` (the serving task's,
        else the configured one), ``variant`` (the embedding variant they were learned on, else
        the serving one when it is an embedding model), ``limits``, ``queued``."""
        store = self.store
        counted = store.summary() if store is not None else {"classes": 0, "shots": 0}
        active = self.worker.active
        task = active.task if active is not None else None
        embedding = isinstance(task, EmbeddingTask)
        variant = counted.get("variant")
        if variant is None and active is not None and embedding:
            variant = active.model.manifest.variant
        with self._cond:
            queued = sum(1 for item in self._queue if item is not _STOP)
        cfg = self.cfg
        return {
            "enabled": cfg.enabled,
            "classes": counted["classes"],
            "shots": counted["shots"],
            "mode": task.mode if isinstance(task, EmbeddingTask) else cfg.mode,
            "variant": variant,
            "limits": {
                "max_shots": cfg.max_shots,
                "max_classes": cfg.max_classes,
                "max_label_length": cfg.max_label_length,
                "queue_size": cfg.queue_size,
            },
            "queued": queued,
        }

    def publish_classes(self) -> None:
        """Swap the worker's task for one with the current classes and mode (the backend is
        shared, so nothing is retired: the worker counts a backend's users, not a task's).
        Call with the swapper's lock held."""
        active = self.worker.active
        if active is not None:
            self.worker.swap_model(self.apply(active))

    def _publish_classes(self) -> None:
        with self.swap_lock:
            self.publish_classes()

    # --- the IPC callback ----------------------------------------------------------------------
    def on_message(self, topic: str, payload: bytes | dict[str, Any]) -> None:
        """Decode, validate the envelope, enqueue; never blocks, never raises."""
        rid: Any = None
        reply = self.cfg.reply_topic
        op: Any = None
        try:
            try:
                obj = decode_payload(payload)
            except RequestError:
                if not isinstance(payload, dict):  # its id, when the raw bytes show one
                    rid = scan_envelope(payload).get("id")
                raise
            rid, op = obj.get("id"), obj.get("op")
            wanted = obj.get("reply_topic")
            if wanted is not None:
                if not isinstance(wanted, str) or not self.reply_topic_allowed(wanted):
                    raise LearnError(
                        "INVALID_REQUEST", "reply_topic is not allowed by this component's recipe"
                    )
                reply = wanted
            if op not in OPS:
                raise LearnError("INVALID_REQUEST", f"op must be one of {', '.join(OPS)}")
            if rid is not None and not isinstance(rid, str | int):
                raise LearnError("INVALID_REQUEST", "id must be a string or a number")
            with self._cond:
                if len(self._queue) >= self.cfg.queue_size:
                    raise LearnError(
                        "OVERLOADED", f"learning queue full ({self.cfg.queue_size}); retry later"
                    )
                self._queue.append((obj, reply))
                self._cond.notify()
        except (LearnError, RequestError) as exc:
            self._reply(reply, _error(rid, op, str(getattr(exc, "code", "")), exc.message))
        except Exception as exc:  # boundary
            log.exception("learning intake failed", extra={"event": f"{self.role}.learn_error"})
            self._reply(reply, _error(rid, op, "INTERNAL", f"intake failed: {exc}"))

    # --- the thread ----------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name=f"{self.role}-learn", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        with self._cond:
            self._queue.append(_STOP)
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._extractor is not None:
            self._extractor[1].close()
            self._extractor = None

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._queue:
                    self._cond.wait()
                item = self._queue.popleft()
            if item is _STOP:
                return
            assert isinstance(item, tuple)
            obj, reply = item
            try:
                answer = self.handle(obj)
            except (LearnError, RequestError) as exc:
                answer = _error(obj.get("id"), obj.get("op"), str(exc.code), exc.message)
            except Exception as exc:  # boundary: one bad message never stops learning
                log.exception("learning failed", extra={"event": f"{self.role}.learn_error"})
                answer = _error(obj.get("id"), obj.get("op"), "INTERNAL", f"{exc}")
            self._reply(reply, answer)

    def handle(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Run one operation; its ok answer, or LearnError / RequestError."""
        op, rid = obj["op"], obj.get("id")
        ok: dict[str, Any] = {"id": rid, "status": "ok", "op": op}
        active = self.worker.active
        task = active.task if active is not None else None
        if active is None or not isinstance(task, EmbeddingTask):
            raise LearnError(
                "MODEL_UNAVAILABLE",
                "the model is not an embedding model: configure an *-embedding variant "
                "(e.g. modelKey tflite-int8-embedding) to learn classes",
            )
        store = self._store_for(active, task)
        if op == "list":
            counted = self.summary()  # the status report's figures, beside the per-class counts
            extra = {k: counted[k] for k in ("shots", "variant", "limits")}
            return {**ok, "classes": store.counts(), "mode": task.mode, **extra}
        if op == "reset":
            removed = store.reset()
            self._commit(store)
            return {**ok, "removed": removed}
        label = store.check_label(obj.get("label"))
        if op == "remove":
            removed = store.remove(label)
            self._commit(store)
            return {**ok, "label": label, "removed": removed}
        # add
        if task.own is not None and label in task.own.labels:
            raise LearnError("INVALID_LABEL", f"the model already has a class {label!r}")
        store.check_add(label)
        if "image" not in obj:
            raise LearnError("INVALID_REQUEST", "add needs an image")
        request = parse_request({"id": "learn", "image": obj["image"]})
        embedding = self._embed(active, task, request.image)
        shots = store.add(label, embedding)
        self._commit(store)
        return {**ok, "label": label, "shots": shots}

    def _store_for(self, active: ActiveModel, task: EmbeddingTask) -> ClassStore:
        store = self.store
        if store is None or store.dim != task.dim:
            if store is not None and store.counts():
                raise LearnError(
                    "MODEL_UNAVAILABLE",
                    f"the learned classes have {store.dim}-value embeddings; this model's "
                    f"have {task.dim}: reset them first",
                )
            store = ClassStore(task.dim, self.cfg.limits())
            self.store = store
        store.limits = self.cfg.limits()
        store.meta = {
            "model": active.model.manifest.variant,
            "sha256": active.model.manifest.sha256,
        }
        return store

    def _embed(self, active: ActiveModel, task: EmbeddingTask, image: Any) -> np.ndarray:
        if self._extractor is None or self._extractor[0].model is not active.model:
            if self._extractor is not None:
                self._extractor[1].close()
            self._extractor = (active, self.make_backend(active))
        backend = self._extractor[1]
        pixels: Any = self.loader.load(image)  # RequestError: refused, the class untouched
        try:
            tensor = task.preprocess(pixels, active.model)
        except ValueError as exc:
            raise LearnError("IMAGE_DECODE_FAILED", str(exc)) from exc
        finally:
            pixels = None
            self.loader.release()
        return backend.infer(tensor)

    def _commit(self, store: ClassStore) -> None:
        try:
            store.save(self.path)
        except OSError as exc:
            raise LearnError(
                "PERSIST_FAILED", f"could not save the learned classes: {exc}"
            ) from exc
        finally:
            self._publish_classes()

    def _reply(self, topic: str, answer: dict[str, Any]) -> None:
        try:
            self.bus.publish_json(topic, answer)
        except Exception:  # boundary
            log.exception(
                "could not publish a learning reply", extra={"event": f"{self.role}.publish_error"}
            )


def _error(rid: Any, op: Any, code: str, message: str) -> dict[str, Any]:
    return {
        "id": rid,
        "status": "error",
        "op": op if op in OPS else None,
        "error": {"code": code or "INTERNAL", "message": message},
    }
