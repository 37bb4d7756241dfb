"""Composition root of com.custom.ImageClassifier: read config, build the serving pieces
(:mod:`ggvision.serving`) for the classification task, wire the bus.

Run by the recipe as ``python -m ggvision_classifier`` (or the ``ggvision-classifier`` script)
with ``GGV_MODEL_STORE`` set from
``{com.custom.ImageClassification.ModelStore:artifacts:decompressedPath}``.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from ggvision.bus import Bus
from ggvision.component import command_line, run_component
from ggvision.core.auth import PUBSUB, AccessControl
from ggvision.errors import ConfigError, GgvisionError
from ggvision.serving import (
    ActiveModel,
    Backend,
    DeferWhileBusy,
    ImageLoader,
    ModelCommands,
    ModelError,
    ModelSwapper,
    Worker,
    backend_options,
    backends,
    health,
    outstanding,
    prepare_model,
)
from ggvision.serving.learning import Learner
from ggvision.telemetry import Health, RateMeter, StatusReporter
from ggvision.uplink import Uplink
from ggvision_classifier.config import ClassifierConfig

log = logging.getLogger("ggvision_classifier")

NAME = "com.custom.ImageClassifier"
# The role in log event keys, thread names and messages; the package whose extras install the
# runtimes (named when one is missing).
ROLE = "classifier"
DISTRIBUTION = "ggvision-classifier"
BACKENDS = ("tflite", "onnx", "torch", "dlr", "fake")


def load_model(cfg: ClassifierConfig) -> ActiveModel:
    """The configured model, loaded, warmed and checked (ModelError when it cannot serve)."""
    return prepare_model(cfg, events=ROLE, distribution=DISTRIBUTION)


class ClassifierService:
    """Owns the config and wires the serving pieces: the worker (intake, stages, replies), the
    swapper (deployments), model-switch commands, the uplink and the status reports. A
    deployment's component update is deferred while requests are in flight
    (:class:`~ggvision.serving.DeferWhileBusy`)."""

    def __init__(self, bus: Bus, work_dir: Path | None = None) -> None:
        self.bus = bus
        self.work_dir = work_dir or Path.cwd()
        raw = bus.get_configuration()
        self.cfg = ClassifierConfig.from_raw(raw)
        acl = AccessControl("self", raw.get("accessControl"))
        self.uplink: Uplink | None = None
        self._rate = RateMeter()
        active: ActiveModel | None = None
        model_error: str | None = None
        try:
            active = load_model(self.cfg)
        except (ModelError, GgvisionError) as exc:
            model_error = str(exc)
            log.error("model unavailable: %s", exc, extra={"event": "classifier.model_error"})
        cfg = self.cfg
        self.worker = Worker(
            bus,
            result_topic=cfg.result_topic,
            loader=_loader(cfg, active),
            queue_size=cfg.queue_size,
            top_k=cfg.top_k,
            threshold=cfg.threshold,
            reply_topic_allowed=lambda t: acl.allows(PUBSUB, "aws.greengrass#PublishToTopic", t),
            active=active,
            unavailable_reason=model_error or "no model is loaded",
            role=ROLE,
            recent_ids=cfg.recent_ids,
            recent_ids_seconds=cfg.recent_ids_seconds,
            max_queue_bytes=cfg.queue_max_bytes,
            max_queue_delay_s=cfg.max_queue_delay_ms / 1000,
        )
        self.swapper = ModelSwapper(
            bus, self.worker, self._prepare, role=ROLE, model_error=model_error
        )
        # Live learning (an embedding model): its classes join every model that can take them.
        self.learner = Learner(
            bus,
            self.worker,
            cfg.learning,
            work_dir=self.work_dir,
            loader=_loader(cfg, active),
            swap_lock=self.swapper.lock,
            make_backend=self._learning_backend,
            reply_topic_allowed=lambda t: acl.allows(PUBSUB, "aws.greengrass#PublishToTopic", t),
            role=ROLE,
        )
        if active is not None:
            self.worker.swap_model(self.learner.apply(active))
        self._learn_sub: Any = None
        self.commands = ModelCommands(
            bus, self.swapper, lambda: self.cfg, backends=BACKENDS, role=ROLE
        )
        worker = self.worker
        self.defer_updates = DeferWhileBusy(lambda: outstanding(worker), role=ROLE)
        self.reporter = StatusReporter(
            bus,
            NAME,
            self.health,
            interval_s=cfg.status_interval_seconds,
            topic=cfg.status_topic,
        )

    def start(self) -> None:
        self.worker.start()
        self._start_uplink(self.cfg)
        self._subs = [
            # on_message only decodes, validates and enqueues: on the IPC thread, no hand-off
            self.bus.subscribe(self.cfg.inference_topic, self.worker.on_message, inline=True),
            self.bus.subscribe_validation(self.validate),
            self.bus.subscribe_configuration(self.on_configuration_changed),
            self.bus.subscribe_component_updates(self.defer_updates, self.defer_updates.done),
        ]
        self.commands.subscribe(self.cfg)
        self.learner.start()
        self._subscribe_learning(self.cfg)
        self.bus.update_state("RUNNING" if self.worker.active else "ERRORED")
        self.reporter.start()
        active = self.worker.active
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
        self.commands.close()
        if self._learn_sub is not None:
            self._learn_sub.close()
        self.learner.stop()
        self.worker.stop()
        if self.uplink is not None:
            self.uplink.stop()
        self.reporter.stop(final=True)

    # --- status --------------------------------------------------------------------------------
    def health(self) -> Health:
        uplink = self.uplink
        return health(
            self.worker,
            self._rate,
            model_key=self.cfg.model_key,
            model_error=self.swapper.last_model_error,
            last_swap=self.swapper.last_swap,
            last_command=self.commands.last_command,
            uplink=uplink.stats.snapshot() if uplink else None,
        )

    # --- deployments ---------------------------------------------------------------------------
    def validate(self, proposed: dict[str, Any]) -> tuple[bool, str]:
        """Accept a deployment only if its configuration is valid and its model loads, warms and
        answers with one score per label; the loaded model is kept for the swap that follows."""
        try:
            cfg = ClassifierConfig.from_raw(proposed)
        except ConfigError as exc:
            return False, str(exc)
        return self.swapper.validate(cfg, self.cfg)

    def on_configuration_changed(self, key_path: list[str]) -> None:
        # Runs on the SDK's thread: do the (slow) reload elsewhere.
        threading.Thread(target=self.reload, name="classifier-reload", daemon=True).start()

    def reload(self) -> None:
        with self.swapper.lock:
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
            needs_model = new.model_fields_changed(self.cfg) or self.worker.active is None
            if needs_model and not self.swapper.swap(new):
                return
            if needs_model:  # a candidate validated earlier may predate the latest shots
                self.learner.cfg = new.learning
                self.learner.publish_classes()
            self.worker.configure(
                top_k=new.top_k,
                threshold=new.threshold,
                recent_ids=new.recent_ids,
                recent_ids_seconds=new.recent_ids_seconds,
                queue_size=new.queue_size,
                max_queue_bytes=new.queue_max_bytes,
                max_queue_delay_s=new.max_queue_delay_ms / 1000,
            )
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
                self.commands.subscribe(new)
            self.learner.cfg = new.learning
            if new.learning.mode != old.learning.mode:
                self.learner.publish_classes()  # the swapper's lock is held
            if (new.learning.enabled, new.learning.topic) != (
                old.learning.enabled,
                old.learning.topic,
            ):
                self._subscribe_learning(new)

    # --- models and live learning ------------------------------------------------------------
    def _prepare(self, cfg: ClassifierConfig) -> ActiveModel:
        """A deployment's model, with the classes learned on this device when it can take them."""
        return self.learner.apply(load_model(cfg))

    def _learning_backend(self, active: ActiveModel) -> Backend:
        """A second backend of the serving model (one thread each): the shots' embeddings."""
        name = active.backend.name
        backend = backends.create(
            name,
            active.model,
            threads=1,
            options=backend_options(self.cfg, name),
            events=ROLE,
            distribution=DISTRIBUTION,
        )
        backend.load()
        return backend

    def _subscribe_learning(self, cfg: ClassifierConfig) -> None:
        if self._learn_sub is not None:
            self._learn_sub.close()
            self._learn_sub = None
        if not cfg.learning.enabled:
            return
        try:
            # on_message only decodes, validates and enqueues
            self._learn_sub = self.bus.subscribe(
                cfg.learning.topic, self.learner.on_message, inline=True
            )
        except GgvisionError as exc:
            # learning is optional: e.g. an accessControl without the learning grant
            log.error(
                "live learning unavailable on %s: %s",
                cfg.learning.topic,
                exc,
                extra={"event": "classifier.learn_unavailable"},
            )

    # --- IoT Core: uplink ----------------------------------------------------------------------
    def _start_uplink(self, cfg: ClassifierConfig) -> None:
        if not cfg.uplink.enabled:
            self.worker.on_result = None
            return
        uplink = Uplink(self.bus, cfg.uplink, component=NAME, work_dir=self.work_dir)
        try:
            uplink.start()
        except Exception as exc:  # boundary: no uplink is not a reason to stop classifying
            log.error("uplink disabled: %s", exc, extra={"event": "classifier.uplink_error"})
            return
        self.uplink = uplink
        self.worker.on_result = uplink.offer
        log.info("uplink to %s", uplink.topic, extra={"event": "classifier.uplink"})


def _loader(cfg: ClassifierConfig, active: ActiveModel | None) -> ImageLoader:
    return ImageLoader(
        cfg.allowed_directories,
        max_bytes=cfg.max_image_bytes,
        max_pixels=cfg.max_image_pixels,
        max_decode_pixels=cfg.max_decode_pixels,
        frame_directory=cfg.frame_directory,
        draft_size=_draft(cfg, active),
    )


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
