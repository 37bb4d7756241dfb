"""What a task plug-in implements: how an image becomes the model's input, how the model's output
becomes the task's answer, and what a warmed-up model must output to serve the task.

A task is stateless (one instance may serve several models and threads); the worker passes it the
model and the request's resolved ``top_k`` and ``threshold`` (a classifier's best classes and
minimum probability; a detector's most boxes and minimum score).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from ggvision.contract import Prediction
from ggvision.serving.models.store import Model
from ggvision.serving.preprocess import ImageLike, preprocess


@dataclass(slots=True)
class TaskOutput:
    """A task's answer: ranked ``predictions`` (classification) and/or a task-specific
    ``output`` object, which the result carries as ``output`` (absent when None)."""

    predictions: list[Prediction] = field(default_factory=list)
    output: dict[str, Any] | None = None


class Task(ABC):
    """One kind of answer a model gives (the manifest's ``task``)."""

    name: ClassVar[str] = "?"

    def bind(self, model: Model) -> Task:
        """The task ready to serve ``model`` (a task that reads files beside the model, e.g. an
        embedding's head, loads them here; ModelError when it cannot). By default itself."""
        return self

    def preprocess(self, image: ImageLike, model: Model) -> np.ndarray:
        """The model's input for ``image``: by default the manifest's own preprocessing
        (:func:`ggvision.serving.preprocess.preprocess`). ValueError for an unusable image."""
        return preprocess(image, model.manifest)

    @abstractmethod
    def check(self, model: Model, output: np.ndarray) -> None:
        """ModelError when ``output`` (of an inference on zeros) does not fit the task."""

    @abstractmethod
    def postprocess(
        self, output: np.ndarray, model: Model, *, top_k: int, threshold: float
    ) -> TaskOutput:
        """The model's (flattened float32) output -> the task's answer."""
