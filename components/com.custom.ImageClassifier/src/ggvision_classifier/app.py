"""Composition root of com.custom.ImageClassifier: read config, build the serving pieces
(:mod:`ggvision.serving`) for the classification task, wire the bus.

Run by the recipe as ``python -m ggvision_classifier`` (or the ``ggvision-classifier`` script)
with ``GGV_MODEL_STORE`` set from
``{com.custom.ImageClassification.ModelStore:artifacts:decompressedPath}``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ggvision.bus import Bus
from ggvision.component import command_line, run_component
from ggvision.core.auth import PUBSUB, AccessControl
from ggvision.errors import GgvisionError
from ggvision.serving import ActiveModel, Backend, backend_options, backends, prepare_model
from ggvision.serving.intake import ReplyTopicCheck
from ggvision.serving.learning import Learner
from ggvision.serving.service import ModelService
from ggvision.telemetry import Health
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


class ClassifierService(ModelService[ClassifierConfig]):
    """The classifier: :class:`~ggvision.serving.service.ModelService` on ``inferenceTopic``
    with the classifier's configuration, plus live learning on an embedding model
    (:class:`~ggvision.serving.learning.Learner`: its classes join every model that can take
    them)."""

    NAME = NAME
    ROLE = ROLE
    DISTRIBUTION = DISTRIBUTION
    BACKENDS = BACKENDS
    CONFIG = ClassifierConfig

    def reply_topic_check(self, raw: dict[str, Any]) -> ReplyTopicCheck:
        acl = AccessControl("self", raw.get("accessControl"))
        return lambda t: acl.allows(PUBSUB, "aws.greengrass#PublishToTopic", t)

    def __init__(self, bus: Bus, work_dir: Path | None = None) -> None:
        super().__init__(bus, work_dir)
        cfg = self.cfg
        active = self.worker.active
        self.learner = Learner(
            bus,
            self.worker,
            cfg.learning,
            work_dir=self.work_dir,
            loader=self.make_loader(cfg, active),
            swap_lock=self.swapper.lock,
            make_backend=self._learning_backend,
            reply_topic_allowed=self.reply_topic_check(bus.get_configuration()),
            role=ROLE,
        )
        if active is not None:
            self.worker.swap_model(self.learner.apply(active))
        self._learn_sub: Any = None

    def health(self) -> Health:
        """The model service's report plus ``learning``: the learned classes counted
        (:meth:`Learner.summary`, the figures the list op answers with)."""
        report = super().health()
        learner: Learner | None = getattr(self, "learner", None)
        if learner is not None:
            report.extra["learning"] = learner.summary()
        return report

    def load_model(self, cfg: ClassifierConfig) -> ActiveModel:
        """A deployment's model, with the classes learned on this device when it can take them
        (the first model is loaded before the learner exists: it gets them in __init__)."""
        active = load_model(self.resolve_model_key(cfg))
        learner: Learner | None = getattr(self, "learner", None)
        return learner.apply(active) if learner is not None else active

    # --- live learning ---------------------------------------------------------------------------
    def on_start(self) -> None:
        self.learner.start()
        self._subscribe_learning(self.cfg)

    def on_stop(self) -> None:
        if self._learn_sub is not None:
            self._learn_sub.close()
        self.learner.stop()

    def on_reload(
        self, old: ClassifierConfig, new: ClassifierConfig, *, model_changed: bool
    ) -> None:
        self.learner.cfg = new.learning
        # A candidate validated earlier may predate the latest shots; a new mode re-ranks.
        if model_changed or new.learning.mode != old.learning.mode:
            self.learner.publish_classes()  # the swapper's lock is held
        if (new.learning.enabled, new.learning.topic) != (old.learning.enabled, old.learning.topic):
            self._subscribe_learning(new)

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


def main(argv: list[str] | None = None) -> int:
    return run_component(
        "classifier",
        lambda bus, _args: ClassifierService(bus),
        argv,
        parser=command_line("ggvision-classifier", __doc__),
        logger=log,
    )
