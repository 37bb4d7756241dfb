"""Composition root of com.custom.ImageClassifier: read config, load the model, wire the bus.

Run by the recipe as ``python -m ggvision_classifier`` (or the ``ggvision-classifier`` script)
with ``GGV_MODEL_STORE`` set from
``{com.custom.ImageClassification.ModelStore:artifacts:decompressedPath}``.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
from pathlib import Path
from typing import Any

import numpy as np

from ggvision import logs
from ggvision.bus import Bus, IpcBus
from ggvision.core.auth import PUBSUB, AccessControl
from ggvision.errors import ConfigError, GgvisionError
from ggvision_classifier import backends
from ggvision_classifier.config import ClassifierConfig
from ggvision_classifier.images import ImageLoader
from ggvision_classifier.modelstore import DEFAULT_BACKEND, ModelError, configured_model
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


def load_active(cfg: ClassifierConfig) -> ActiveModel:
    """Load and warm the configured model; ModelError when it cannot serve."""
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
    for _ in range(2):
        backend.infer(warm)
    return ActiveModel.of(model, backend)


class ClassifierService:
    """Owns the config, the model lifecycle and the worker; reacts to deployments."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        raw = bus.get_configuration()
        self.cfg = ClassifierConfig.from_raw(raw)
        acl = AccessControl("self", raw.get("accessControl"))
        self._acl = acl
        self._swap_lock = threading.Lock()
        self.last_model_error: str | None = None
        active: ActiveModel | None = None
        try:
            active = load_active(self.cfg)
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

    def start(self) -> None:
        self.classifier.start()
        self._subs = [
            self.bus.subscribe(self.cfg.inference_topic, self.classifier.on_message),
            self.bus.subscribe_validation(self.validate),
            self.bus.subscribe_configuration(self.on_configuration_changed),
        ]
        self.bus.update_state("RUNNING" if self.classifier.active else "ERRORED")
        active = self.classifier.active
        log.info(
            "classifier ready: %s",
            active.info.model_dump() if active else "no model",
            extra={"event": "classifier.ready"},
        )

    def stop(self) -> None:
        for sub in getattr(self, "_subs", []):
            try:
                sub.close()
            except Exception:
                log.debug("closing a subscription failed", exc_info=True)
        self.classifier.stop()

    # --- deployments ---------------------------------------------------------------------------
    def validate(self, proposed: dict[str, Any]) -> tuple[bool, str]:
        """Accept a deployment only if its configuration is valid and its model would load."""
        try:
            cfg = ClassifierConfig.from_raw(proposed)
        except ConfigError as exc:
            return False, str(exc)
        if cfg.model_fields_changed(self.cfg):
            try:
                configured_model(cfg, store_root(cfg))
            except ModelError as exc:
                return False, str(exc)
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
            if new.model_fields_changed(self.cfg) or self.classifier.active is None:
                try:
                    active = load_active(new)
                except (ModelError, GgvisionError) as exc:
                    # A bad new model never replaces the running one.
                    self.last_model_error = str(exc)
                    log.error(
                        "new model failed to load; keeping the current one: %s",
                        exc,
                        extra={"event": "classifier.swap_failed"},
                    )
                    return
                old = self.classifier.active
                self.classifier.swap_model(active)
                self.last_model_error = None
                self.bus.update_state("RUNNING")
                log.info(
                    "model swapped to %s",
                    active.info.model_dump(),
                    extra={"event": "classifier.swapped"},
                )
                del old  # the worker drops its last reference after the in-flight request
            self.classifier.configure(top_k=new.top_k, threshold=new.threshold)
            self.cfg = new


def _draft(cfg: ClassifierConfig, active: ActiveModel | None) -> int | None:
    if cfg.decode != "fast":
        return None
    size = active.model.manifest.preprocess.resize if active else 224
    return int(size / 0.875) + 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ggvision-classifier", description=__doc__)
    parser.add_argument("--log-level", default=os.environ.get("GGV_LOG_LEVEL", "INFO"))
    args = parser.parse_args(argv)
    logs.configure(level=args.log_level)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        bus = IpcBus()
        service = ClassifierService(bus)
    except (GgvisionError, ConfigError) as exc:
        log.error("cannot start: %s", exc, extra={"event": "classifier.start_failed"})
        return 2
    service.start()
    stop.wait()
    log.info("stopping", extra={"event": "classifier.stopping"})
    service.stop()
    bus.close()
    return 0
