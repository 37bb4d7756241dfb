"""Composition root of com.custom.ImageClassifier: read config, build the serving pieces
(:mod:`ggvision.serving`) for the classification task, wire the bus.

Run by the recipe as ``python -m ggvision_classifier`` (or the ``ggvision-classifier`` script)
with ``GGV_MODEL_STORE`` set from
``{com.custom.ImageClassification.ModelStore:artifacts:decompressedPath}``.
"""

from __future__ import annotations

import logging
from typing import Any

from ggvision.component import command_line, run_component
from ggvision.core.auth import PUBSUB, AccessControl
from ggvision.serving import ActiveModel, prepare_model
from ggvision.serving.intake import ReplyTopicCheck
from ggvision.serving.service import ModelService
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
    with the classifier's configuration."""

    NAME = NAME
    ROLE = ROLE
    DISTRIBUTION = DISTRIBUTION
    BACKENDS = BACKENDS
    CONFIG = ClassifierConfig

    def reply_topic_check(self, raw: dict[str, Any]) -> ReplyTopicCheck:
        acl = AccessControl("self", raw.get("accessControl"))
        return lambda t: acl.allows(PUBSUB, "aws.greengrass#PublishToTopic", t)

    def load_model(self, cfg: ClassifierConfig) -> ActiveModel:
        return load_model(cfg)


def main(argv: list[str] | None = None) -> int:
    return run_component(
        "classifier",
        lambda bus, _args: ClassifierService(bus),
        argv,
        parser=command_line("ggvision-classifier", __doc__),
        logger=log,
    )
