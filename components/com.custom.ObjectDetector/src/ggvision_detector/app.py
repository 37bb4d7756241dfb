"""Composition root of com.custom.ObjectDetector: read config, build the serving pieces
(:mod:`ggvision.serving`, the same service as the classifier's) for the detection task, wire
the bus.

Run by the recipe as ``python -m ggvision_detector`` (or the ``ggvision-detector`` script) with
``GGV_MODEL_STORE`` set from
``{com.custom.ObjectDetection.ModelStore:artifacts:decompressedPath}``. Requests on
``requestTopic`` (``local/detect``), results with ``"task": "detect"`` on ``resultTopic``.
"""

from __future__ import annotations

import logging
from typing import Any

from ggvision.component import command_line, run_component
from ggvision.core.auth import PUBSUB, AccessControl
from ggvision.serving.intake import ReplyTopicCheck
from ggvision.serving.service import ModelService
from ggvision_detector.config import DetectorConfig

log = logging.getLogger("ggvision_detector")

NAME = "com.custom.ObjectDetector"
# The role in log event keys, thread names and messages; the package whose extras install the
# runtimes (named when one is missing).
ROLE = "detector"
DISTRIBUTION = "ggvision-detector"
# What every result says it answers.
RESULT_TASK = "detect"


class DetectorService(ModelService[DetectorConfig]):
    """The detector: :class:`~ggvision.serving.service.ModelService` on ``requestTopic`` with
    the detector's configuration."""

    NAME = NAME
    ROLE = ROLE
    DISTRIBUTION = DISTRIBUTION
    BACKENDS = ("tflite", "onnx", "fake")
    RESULT_TASK = RESULT_TASK
    TASKS = ("detection",)
    CONFIG = DetectorConfig

    def reply_topic_check(self, raw: dict[str, Any]) -> ReplyTopicCheck:
        acl = AccessControl("self", raw.get("accessControl"))
        return lambda t: acl.allows(PUBSUB, "aws.greengrass#PublishToTopic", t)


def main(argv: list[str] | None = None) -> int:
    return run_component(
        "detector",
        lambda bus, _args: DetectorService(bus),
        argv,
        parser=command_line("ggvision-detector", __doc__),
        logger=log,
    )
