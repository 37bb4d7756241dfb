"""A model component's service, whatever its task: it owns the configuration and wires the
serving pieces (the worker with its intake and replies, the swapper for deployments, the
model-switch commands, the uplink, the status reports, the deferral of component updates while
requests are in flight). The classifier and the detector are this
class with their names, their configuration model and their request topic; nothing in it knows
a task.

A component subclasses :class:`ModelService`, sets :attr:`~ModelService.NAME`, ``ROLE``,
``DISTRIBUTION``, ``CONFIG`` (its :class:`~ggvision.serving.config.ServingConfig`) and
``RESULT_TASK``, and implements :meth:`~ModelService.reply_topic_check` (its recipe's
``accessControl``: the component wires the local core's checker, which this library never
imports).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

from ggvision.bus import Bus
from ggvision.errors import ConfigError, GgvisionError
from ggvision.serving.commands import ModelCommands
from ggvision.serving.config import ServingConfig
from ggvision.serving.images import ImageLoader
from ggvision.serving.intake import ReplyTopicCheck
from ggvision.serving.models.auto import AUTO_KEY, AutoSelector, Choice
from ggvision.serving.models.loading import ActiveModel, prepare_model
from ggvision.serving.models.store import ModelError
from ggvision.serving.status import health
from ggvision.serving.swap import ModelSwapper
from ggvision.serving.updates import DeferWhileBusy, outstanding, progress
from ggvision.serving.worker import Worker
from ggvision.telemetry import Health, RateMeter, StatusReporter
from ggvision.uplink import Uplink

log = logging.getLogger(__name__)

C = TypeVar("C", bound=ServingConfig)


class ModelService(Generic[C]):
    """Owns the config and wires the serving pieces of one model component."""

    NAME: ClassVar[str] = "?"  # the component's name
    ROLE: ClassVar[str] = "serving"  # log event keys, thread names, messages
    DISTRIBUTION: ClassVar[str | None] = None  # whose extras install the runtimes
    BACKENDS: ClassVar[tuple[str, ...]] = ("tflite", "onnx", "torch", "dlr", "fake")
    RESULT_TASK: ClassVar[str | None] = None  # the results' "task" (None: no key)
    # The manifest tasks this component serves (None: any registered task).
    TASKS: ClassVar[tuple[str, ...] | None] = None
    CONFIG: type[C]
    # The manifest tasks modelKey auto chooses among (it judges top-1 agreement).
    AUTO_TASKS: ClassVar[tuple[str, ...]] = ("classification",)

    def __init__(self, bus: Bus, work_dir: Path | None = None) -> None:
        self.bus = bus
        self.work_dir = work_dir or Path.cwd()
        raw = bus.get_configuration()
        self.cfg: C = self.CONFIG.from_raw(raw)
        allowed = self.reply_topic_check(raw)
        self.uplink: Uplink | None = None
        self._rate = RateMeter()
        role = self.ROLE
        # modelKey auto: the variant that serves, measured in the background after start().
        default_key = self.CONFIG.model_fields["model_key"].default
        self.auto = AutoSelector(
            self.work_dir,
            role=role,
            default_key=default_key if isinstance(default_key, str) else "",
            tasks=self.AUTO_TASKS,
        )
        active: ActiveModel | None = None
        model_error: str | None = None
        try:
            active = self.load_model(self.cfg)
        except (ModelError, GgvisionError) as exc:
            model_error = str(exc)
            log.error("model unavailable: %s", exc, extra={"event": f"{role}.model_error"})
        cfg = self.cfg
        top_k, threshold = cfg.answer_defaults()
        self.worker = Worker(
            bus,
            result_topic=cfg.result_topic,
            loader=self.make_loader(cfg, active),
            queue_size=cfg.queue_size,
            top_k=top_k,
            threshold=threshold,
            reply_topic_allowed=allowed,
            active=active,
            unavailable_reason=model_error or "no model is loaded",
            role=role,
            recent_ids=cfg.recent_ids,
            recent_ids_seconds=cfg.recent_ids_seconds,
            max_queue_bytes=cfg.queue_max_bytes,
            max_queue_delay_s=cfg.max_queue_delay_ms / 1000,
            task_options=cfg.task_options(),
            result_task=self.RESULT_TASK,
            max_batch=cfg.max_batch,
            max_batch_delay_s=cfg.max_batch_delay_ms / 1000,
            max_sources=cfg.max_sources,
        )
        self.swapper: ModelSwapper[C] = ModelSwapper(
            bus, self.worker, self.load_model, role=role, model_error=model_error
        )
        self.commands = ModelCommands(
            bus, self.swapper, lambda: self.cfg, backends=self.BACKENDS, role=role
        )
        # A deployment's component update waits for the requests in flight when it is announced.
        worker = self.worker
        self.defer_updates = DeferWhileBusy(
            lambda: outstanding(worker), progress=lambda: progress(worker), role=role
        )
        self.reporter = StatusReporter(
            bus,
            self.NAME,
            self.health,
            interval_s=cfg.status_interval_seconds,
            topic=cfg.status_topic,
        )

    # --- what a component provides ---------------------------------------------------------------
    def reply_topic_check(self, raw: dict[str, Any]) -> ReplyTopicCheck:
        """Whether the recipe's ``accessControl`` (in ``raw``) lets this component publish on a
        request's ``reply_topic``."""
        raise NotImplementedError

    def load_model(self, cfg: C) -> ActiveModel:
        """The configured model, loaded, warmed and checked (ModelError when it cannot serve,
        or when its task is not one this component serves)."""
        cfg = self.resolve_model_key(cfg)
        active = prepare_model(cfg, events=self.ROLE, distribution=self.DISTRIBUTION)
        task = active.model.manifest.task
        if self.TASKS is not None and task not in self.TASKS:
            active.backend.close()
            raise ModelError(
                f"model {cfg.model_key!r} is a {task} model; {self.NAME} serves "
                f"{', '.join(self.TASKS)} models"
            )
        return active

    def resolve_model_key(self, cfg: C) -> C:
        """``cfg`` with ``modelKey: auto`` replaced by the variant that serves now (the cached
        choice, else a provisional one: :class:`~ggvision.serving.models.auto.AutoSelector`)."""
        if cfg.model_key != AUTO_KEY or cfg.model_store_layout != "ggvision":
            return cfg
        return cfg.model_copy(update={"model_key": self.auto.resolve(cfg)})

    def make_loader(self, cfg: C, active: ActiveModel | None) -> ImageLoader:
        """How requests' images are read: the configured limits and frame directory."""
        return ImageLoader(
            cfg.allowed_directories,
            max_bytes=cfg.max_image_bytes,
            max_pixels=cfg.max_image_pixels,
            max_decode_pixels=cfg.max_decode_pixels,
            frame_directory=cfg.frame_directory,
            draft_size=_draft(cfg, active),
        )

    # Hooks for what a component serves beyond requests (the classifier's live learning).
    def on_start(self) -> None:
        """After the request, configuration and command subscriptions, before RUNNING."""

    def on_stop(self) -> None:
        """After the commands close, before the worker stops."""

    def on_reload(self, old: C, new: C, *, model_changed: bool) -> None:
        """At the end of a configuration reload (the swapper's lock held)."""

    # --- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        self.worker.start()
        self._start_uplink(self.cfg)
        self._subs = [
            # on_message only decodes, validates and enqueues: on the IPC thread, no hand-off
            self.bus.subscribe(self.cfg.listen_topic(), self.worker.on_message, inline=True),
            self.bus.subscribe_validation(self.validate),
            self.bus.subscribe_configuration(self.on_configuration_changed),
            self.bus.subscribe_component_updates(self.defer_updates, self.defer_updates.done),
        ]
        self.commands.subscribe(self.cfg)
        self.on_start()
        self.bus.update_state("RUNNING" if self.worker.active else "ERRORED")
        self._start_auto(self.cfg)
        self.reporter.start()
        active = self.worker.active
        log.info(
            "%s ready: %s",
            self.ROLE,
            active.info.model_dump() if active else "no model",
            extra={"event": f"{self.ROLE}.ready"},
        )

    def stop(self) -> None:
        self.auto.stop()
        for sub in getattr(self, "_subs", []):
            try:
                sub.close()
            except Exception:
                log.debug("closing a subscription failed", exc_info=True)
        self.commands.close()
        self.on_stop()
        self.worker.stop()
        if self.uplink is not None:
            self.uplink.stop()
        self.reporter.stop(final=True)

    # --- status ----------------------------------------------------------------------------------
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
            request_topic=self.cfg.listen_topic(),
            auto=self.auto.report() if self.cfg.model_key == AUTO_KEY else None,
        )

    # --- deployments -----------------------------------------------------------------------------
    def validate(self, proposed: dict[str, Any]) -> tuple[bool, str]:
        """Accept a deployment only if its configuration is valid and its model loads, warms and
        answers as its task expects; the loaded model is kept for the swap that follows."""
        try:
            cfg = self.CONFIG.from_raw(proposed)
        except ConfigError as exc:
            return False, str(exc)
        return self.swapper.validate(cfg, self.cfg)

    def on_configuration_changed(self, key_path: list[str]) -> None:
        # Runs on the SDK's thread: do the (slow) reload elsewhere.
        threading.Thread(target=self.reload, name=f"{self.ROLE}-reload", daemon=True).start()

    def reload(self) -> None:
        with self.swapper.lock:
            try:
                new = self.CONFIG.from_raw(self.bus.get_configuration())
            except (ConfigError, GgvisionError) as exc:
                log.error(
                    "new configuration rejected: %s",
                    exc,
                    extra={"event": f"{self.ROLE}.config_rejected"},
                )
                return
            if new == self.cfg:
                return
            needs_model = new.model_fields_changed(self.cfg) or self.worker.active is None
            if needs_model and not self.swapper.swap(new):
                return
            top_k, threshold = new.answer_defaults()
            self.worker.configure(
                top_k=top_k,
                threshold=threshold,
                recent_ids=new.recent_ids,
                recent_ids_seconds=new.recent_ids_seconds,
                queue_size=new.queue_size,
                max_queue_bytes=new.queue_max_bytes,
                max_queue_delay_s=new.max_queue_delay_ms / 1000,
                task_options=new.task_options(),
                max_batch=new.max_batch,
                max_batch_delay_s=new.max_batch_delay_ms / 1000,
                max_sources=new.max_sources,
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
            self.on_reload(old, new, model_changed=needs_model)
            self._start_auto(new)

    # --- modelKey auto ----------------------------------------------------------------------------
    def _start_auto(self, cfg: C) -> None:
        """Measure the variants in the background when ``modelKey: auto`` has no choice for
        this store yet; the winner is swapped in between two requests."""
        if cfg.model_key != AUTO_KEY or not self.auto.pending():
            return

        def prepare(variant: str) -> ActiveModel:
            trial_cfg = cfg.model_copy(update={"model_key": variant})
            return prepare_model(trial_cfg, events=self.ROLE, distribution=self.DISTRIBUTION)

        self.auto.start(cfg, prepare, lambda choice: self._serve_auto(cfg, choice))

    def _serve_auto(self, measured: C, choice: Choice) -> None:
        with self.swapper.lock:
            if self.cfg.model_identity() != measured.model_identity():
                return  # a deployment changed the model meanwhile
            active = self.worker.active
            if active is not None and active.model.directory.name == choice.variant:
                return
            self.swapper.swap(measured.model_copy(update={"model_key": choice.variant}))

    # --- IoT Core: uplink ------------------------------------------------------------------------
    def _start_uplink(self, cfg: C) -> None:
        if not cfg.uplink.enabled:
            self.worker.on_result = None
            return
        uplink = Uplink(self.bus, cfg.uplink, component=self.NAME, work_dir=self.work_dir)
        try:
            uplink.start()
        except Exception as exc:  # boundary: no uplink is not a reason to stop serving
            log.error("uplink disabled: %s", exc, extra={"event": f"{self.ROLE}.uplink_error"})
            return
        self.uplink = uplink
        self.worker.on_result = uplink.offer
        log.info("uplink to %s", uplink.topic, extra={"event": f"{self.ROLE}.uplink"})


def _draft(cfg: ServingConfig, active: ActiveModel | None) -> int | None:
    if cfg.decode != "fast":
        return None
    size = active.model.manifest.preprocess.resize if active else 224
    return int(size / 0.875) + 1
