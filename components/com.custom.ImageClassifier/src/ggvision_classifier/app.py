"""Composition root of com.custom.ImageClassifier: read config, load the model, wire the bus.

Run by the recipe as ``python -m ggvision_classifier`` (or the ``ggvision-classifier`` script)
with ``GGV_MODEL_STORE`` set from
``{com.custom.ImageClassification.ModelStore:artifacts:decompressedPath}``.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from ggvision.bus import Bus, Subscription
from ggvision.component import command_line, run_component
from ggvision.core.auth import PUBSUB, AccessControl
from ggvision.errors import ConfigError, GgvisionError
from ggvision.telemetry import Health, RateMeter, StatusReporter, percentiles
from ggvision.uplink import Uplink, resolve_topic
from ggvision_classifier import backends
from ggvision_classifier.config import ClassifierConfig
from ggvision_classifier.images import ImageLoader
from ggvision_classifier.modelstore import (
    DEFAULT_BACKEND,
    ModelError,
    configured_model,
    model_keys,
)
from ggvision_classifier.worker import ActiveModel, Classifier

log = logging.getLogger("ggvision_classifier")

MODEL_STORE_ENV = "GGV_MODEL_STORE"


def store_root(cfg: ClassifierConfig) -> Path:
    root = cfg.model_store_path or os.environ.get(MODEL_STORE_ENV, "")
    if not root:
        raise ModelError(
            f"no model store: set {MODEL_STORE_ENV} (the recipe does, from the model-store "
            "component's artifacts:decompressedPath) or configuration modelStorePath"
        )
    return Path(root)


def prepare_model(cfg: ClassifierConfig) -> ActiveModel:
    """Load, warm and check the configured model: its warm-up inferences on zeros must give one
    score per label. ModelError with the reason when it cannot serve (the backend is closed)."""
    model = configured_model(cfg, store_root(cfg))
    name = cfg.backend or DEFAULT_BACKEND[model.manifest.format]
    options: dict[str, Any] = {}
    if name == "tflite":  # the delegate, or libedgetpu.so.1 for a *_edgetpu.tflite model
        options = {"delegate_fallback": cfg.delegate_fallback}
        if cfg.delegate:
            options["delegate"] = cfg.delegate
        if cfg.delegate_options:
            options["delegate_options"] = dict(cfg.delegate_options)
    backend = backends.create(name, model, threads=cfg.inference_threads, options=options)
    backend.load()
    spec = model.manifest.input
    warm = np.zeros(spec.shape, dtype=np.dtype(spec.dtype))
    try:
        try:
            for _ in range(2):
                scores = backend.infer(warm)
        except ModelError:
            raise
        except Exception as exc:
            raise ModelError(f"model {model.directory.name} cannot run: {exc}") from exc
        if scores.size != len(model.labels):
            raise ModelError(
                f"model {model.directory.name} outputs {scores.size} scores for "
                f"{len(model.labels)} labels (wrong shape)"
            )
    except ModelError:
        backend.close()
        raise
    return ActiveModel.of(model, backend)


NAME = "com.custom.ImageClassifier"
BACKENDS = ("tflite", "onnx", "torch", "dlr", "fake")
# A model validated for a deployment that never applied (another component rejected it) is
# released after this long.
CANDIDATE_TTL_S = 120.0


class ClassifierService:
    """Owns the config, the model lifecycle, the worker, the uplink and the status reports;
    reacts to deployments and to model-switch commands."""

    def __init__(self, bus: Bus, work_dir: Path | None = None) -> None:
        self.bus = bus
        self.work_dir = work_dir or Path.cwd()
        raw = bus.get_configuration()
        self.cfg = ClassifierConfig.from_raw(raw)
        acl = AccessControl("self", raw.get("accessControl"))
        self._swap_lock = threading.Lock()
        # A model loaded by validate() or a command, used by the reload that follows.
        self._candidate: tuple[tuple[Any, ...], ActiveModel] | None = None
        self.last_model_error: str | None = None
        self.last_swap: dict[str, Any] | None = None
        self.last_command: dict[str, Any] | None = None
        self.uplink: Uplink | None = None
        self._command_sub: Subscription | None = None
        self._rate = RateMeter()
        active: ActiveModel | None = None
        try:
            active = prepare_model(self.cfg)
        except (ModelError, GgvisionError) as exc:
            self.last_model_error = str(exc)
            log.error("model unavailable: %s", exc, extra={"event": "classifier.model_error"})
        cfg = self.cfg
        self.classifier = Classifier(
            bus,
            result_topic=cfg.result_topic,
            loader=ImageLoader(
                cfg.allowed_directories,
                max_bytes=cfg.max_image_bytes,
                max_pixels=cfg.max_image_pixels,
                frame_directory=cfg.frame_directory,
                draft_size=_draft(cfg, active),
            ),
            queue_size=cfg.queue_size,
            top_k=cfg.top_k,
            threshold=cfg.threshold,
            reply_topic_allowed=lambda t: acl.allows(PUBSUB, "aws.greengrass#PublishToTopic", t),
            active=active,
            unavailable_reason=self.last_model_error or "no model is loaded",
        )
        self.reporter = StatusReporter(
            bus,
            NAME,
            self.health,
            interval_s=cfg.status_interval_seconds,
            topic=cfg.status_topic,
        )

    def start(self) -> None:
        self.classifier.start()
        self._start_uplink(self.cfg)
        self._subs = [
            # on_message only decodes, validates and enqueues: on the IPC thread, no hand-off
            self.bus.subscribe(self.cfg.inference_topic, self.classifier.on_message, inline=True),
            self.bus.subscribe_validation(self.validate),
            self.bus.subscribe_configuration(self.on_configuration_changed),
        ]
        self._subscribe_commands(self.cfg)
        self.bus.update_state("RUNNING" if self.classifier.active else "ERRORED")
        self.reporter.start()
        active = self.classifier.active
        log.info(
            "classifier ready: %s",
            active.info.model_dump() if active else "no model",
            extra={"event": "classifier.ready"},
        )

    def stop(self) -> None:
        subs = [*getattr(self, "_subs", []), self._command_sub]
        for sub in subs:
            if sub is None:
                continue
            try:
                sub.close()
            except Exception:
                log.debug("closing a subscription failed", exc_info=True)
        self.classifier.stop()
        if self.uplink is not None:
            self.uplink.stop()
        self.reporter.stop(final=True)

    # --- status --------------------------------------------------------------------------------
    def health(self) -> Health:
        c = self.classifier
        stats, latencies = c.snapshot()
        p50, p95 = percentiles(latencies)
        active = c.active
        uplink = self.uplink
        return Health(
            state="RUNNING" if active else "ERRORED",
            fps=self._rate.rate(stats["ok"]),
            latency_p50_ms=p50,
            latency_p95_ms=p95,
            queue_depth=c.queue_depth(),
            dropped=stats["dropped_frames"] + stats["overloaded"],
            errors=stats["errors"],
            model=active.info.model_dump() if active else None,
            extra={
                "model_key": self.cfg.model_key,
                "received": stats["received"],
                "ok": stats["ok"],
                "publish_failures": stats["publish_failures"],
                "model_error": self.last_model_error,
                "last_swap": self.last_swap,
                "last_command": self.last_command,
                "uplink": uplink.stats.snapshot() if uplink else None,
            },
        )

    # --- deployments ---------------------------------------------------------------------------
    def validate(self, proposed: dict[str, Any]) -> tuple[bool, str]:
        """Accept a deployment only if its configuration is valid and its model loads, warms and
        answers with one score per label; the loaded model is kept for the swap that follows."""
        try:
            cfg = ClassifierConfig.from_raw(proposed)
        except ConfigError as exc:
            return False, str(exc)
        if cfg.model_identity() == self.cfg.model_identity() and self.classifier.active is not None:
            return True, ""
        with self._swap_lock:
            try:
                self._keep_candidate(cfg, prepare_model(cfg))
            except (ModelError, GgvisionError) as exc:
                log.warning(
                    "deployment rejected: model %s: %s",
                    cfg.model_key,
                    exc,
                    extra={"event": "classifier.validate_rejected"},
                )
                return False, f"model {cfg.model_key!r} cannot serve: {exc}"
        return True, ""

    def on_configuration_changed(self, key_path: list[str]) -> None:
        # Runs on the SDK's thread: do the (slow) reload elsewhere.
        threading.Thread(target=self.reload, name="classifier-reload", daemon=True).start()

    def reload(self) -> None:
        with self._swap_lock:
            try:
                new = ClassifierConfig.from_raw(self.bus.get_configuration())
            except (ConfigError, GgvisionError) as exc:
                log.error(
                    "new configuration rejected: %s",
                    exc,
                    extra={"event": "classifier.config_rejected"},
                )
                return
            if new == self.cfg:
                return
            needs_model = new.model_fields_changed(self.cfg) or self.classifier.active is None
            if needs_model and not self._swap(new):
                return
            self.classifier.configure(top_k=new.top_k, threshold=new.threshold)
            old, self.cfg = self.cfg, new
            self.reporter.interval_s = new.status_interval_seconds
            self.reporter.topic = new.status_topic
            if new.uplink != old.uplink:
                if self.uplink is not None:
                    self.uplink.stop()
                    self.uplink = None
                self._start_uplink(new)
            if (new.command_topic, new.command_reply_topic) != (
                old.command_topic,
                old.command_reply_topic,
            ):
                self._subscribe_commands(new)

    def _swap(self, new: ClassifierConfig) -> bool:
        """Load ``new``'s model beside the running one and swap; False (old keeps serving)
        when it cannot serve. Called with the swap lock held."""
        started = time.monotonic()
        try:
            active = self._take_candidate(new) or prepare_model(new)
        except (ModelError, GgvisionError) as exc:
            # A bad new model never replaces the running one.
            self.last_model_error = f"model {new.model_key!r}: {exc}"
            self.last_swap = {"ok": False, "model_key": new.model_key, "error": str(exc)}
            log.error(
                "new model failed to load; keeping the current one: %s",
                exc,
                extra={"event": "classifier.swap_failed"},
            )
            return False
        old = self.classifier.swap_model(active)
        self.last_model_error = None
        self.last_swap = {
            "ok": True,
            "model_key": new.model_key,
            "model": active.info.model_dump(),
            "load_ms": round((time.monotonic() - started) * 1000, 1),
        }
        self.bus.update_state("RUNNING")
        log.info(
            "model swapped to %s",
            active.info.model_dump(),
            extra={"event": "classifier.swapped"},
        )
        self.classifier.retire(old)  # closes after the requests prepared for it are answered
        return True

    def _keep_candidate(self, cfg: ClassifierConfig, active: ActiveModel) -> None:
        self._drop_candidate()
        self._candidate = (cfg.model_identity(), active)
        timer = threading.Timer(CANDIDATE_TTL_S, self._expire_candidate, args=(active,))
        timer.daemon = True
        timer.start()

    def _expire_candidate(self, active: ActiveModel) -> None:
        with self._swap_lock:
            if self._candidate is not None and self._candidate[1] is active:
                self._drop_candidate()

    def _take_candidate(self, cfg: ClassifierConfig) -> ActiveModel | None:
        cand, self._candidate = self._candidate, None
        if cand is None:
            return None
        if cand[0] == cfg.model_identity():
            return cand[1]
        cand[1].backend.close()
        return None

    def _drop_candidate(self) -> None:
        cand, self._candidate = self._candidate, None
        if cand is not None:
            cand[1].backend.close()

    # --- IoT Core: uplink and commands ---------------------------------------------------------
    def _start_uplink(self, cfg: ClassifierConfig) -> None:
        if not cfg.uplink.enabled:
            self.classifier.on_result = None
            return
        uplink = Uplink(self.bus, cfg.uplink, component=NAME, work_dir=self.work_dir)
        try:
            uplink.start()
        except Exception as exc:  # boundary: no uplink is not a reason to stop classifying
            log.error("uplink disabled: %s", exc, extra={"event": "classifier.uplink_error"})
            return
        self.uplink = uplink
        self.classifier.on_result = uplink.offer
        log.info("uplink to %s", uplink.topic, extra={"event": "classifier.uplink"})

    def _subscribe_commands(self, cfg: ClassifierConfig) -> None:
        if self._command_sub is not None:
            try:
                self._command_sub.close()
            except Exception:
                log.debug("closing the command subscription failed", exc_info=True)
            self._command_sub = None
        if not cfg.command_topic:
            return
        topic = resolve_topic(cfg.command_topic)
        try:
            self._command_sub = self.bus.subscribe_iot(topic, self.on_command)
        except GgvisionError as exc:
            log.error(
                "cannot subscribe to commands on %s: %s",
                topic,
                exc,
                extra={"event": "classifier.command_error"},
            )

    def on_command(self, topic: str, payload: bytes) -> None:
        # Runs on the SDK's thread: loading a model is slow.
        threading.Thread(
            target=self.command, args=(payload,), name="classifier-command", daemon=True
        ).start()

    def command(self, payload: bytes) -> dict[str, Any]:
        """Switch to a model of the store on a cloud command ``{"model": <key>, "backend": ...,
        "id": ...}``; answers on the reply topic. Never a URL or a path: keys only."""
        reply: dict[str, Any] = {"id": None, "status": "rejected"}
        try:
            msg = json.loads(payload)
            if not isinstance(msg, dict):
                raise ValueError("a command is a JSON object")
            reply["id"] = msg.get("id") if isinstance(msg.get("id"), str) else None
            key, backend = msg.get("model"), msg.get("backend", "")
            reply["model"] = key
            if not isinstance(key, str) or not key:
                raise ValueError("'model' must name a model of the store")
            if not isinstance(backend, str) or backend not in ("", *BACKENDS):
                raise ValueError(f"'backend' must be one of {', '.join(BACKENDS)} or empty")
            with self._swap_lock:
                cfg = self.cfg
                keys = model_keys(store_root(cfg))
                if key not in keys:
                    raise ValueError(
                        f"model {key!r} is not in the model store (present: {', '.join(keys)})"
                    )
                proposed = cfg.model_copy(update={"model_key": key, "backend": backend})
                self._keep_candidate(proposed, prepare_model(proposed))
            self.bus.update_configuration([], {"modelKey": key, "backend": backend})
            reply["status"] = "accepted"
        except (ValueError, ModelError, GgvisionError) as exc:
            reply["reason"] = str(exc)
            log.warning(
                "model switch command rejected: %s", exc, extra={"event": "classifier.command"}
            )
        self.last_command = reply
        self._reply_command(reply)
        return reply

    def _reply_command(self, reply: dict[str, Any]) -> None:
        cfg = self.cfg
        topic = cfg.command_reply_topic or f"{cfg.command_topic}/reply"
        try:
            data = json.dumps(reply, separators=(",", ":")).encode()
            self.bus.publish_iot(resolve_topic(topic), data, 1).result(10)
        except Exception as exc:  # best effort: the answer is also in the status report
            log.warning("command reply not sent: %s", exc, extra={"event": "classifier.command"})


def _draft(cfg: ClassifierConfig, active: ActiveModel | None) -> int | None:
    if cfg.decode != "fast":
        return None
    size = active.model.manifest.preprocess.resize if active else 224
    return int(size / 0.875) + 1


def main(argv: list[str] | None = None) -> int:
    return run_component(
        "classifier",
        lambda bus, _args: ClassifierService(bus),
        argv,
        parser=command_line("ggvision-classifier", __doc__),
        logger=log,
    )
