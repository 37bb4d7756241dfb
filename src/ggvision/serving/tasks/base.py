"""What a task plug-in implements: how an image becomes the model's input, how the model's output
becomes the task's answer, and what a warmed-up model must output to serve the task.

A task is stateless (one instance may serve several models and threads); the worker passes it the
model and the request's resolved ``top_k`` and ``threshold`` (a classifier's best classes and
minimum probability; a detector's most boxes and minimum score), and the component's task
``options`` (a detector's label allow-list).

The worker calls :meth:`Task.prepare` (image -> input tensor and a per-request context, e.g. the
original size and the letterbox geometry) on its prepare thread and :meth:`Task.answer` (the
model's output and that context -> the answer) on its inference thread; by default they are
:meth:`Task.preprocess` and :meth:`Task.postprocess` with no context. A task with
``all_outputs = True`` gets every output of the model (a list, in the runtime's order:
:meth:`~ggvision.serving.models.backends.base.Backend.infer_all`), the others the first one
flattened to float32 scores.
"""

from __future__ import annotations

import functools
import weakref
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from ggvision.contract import Detection, Prediction
from ggvision.serving.models.store import Model
from ggvision.serving.preprocess import (
    ImageLike,
    PlaneEncoder,
    PlaneTensor,
    encode_plane,
    plane_spec,
    preprocess,
)


@dataclass(slots=True)
class TaskOutput:
    """A task's answer: ranked ``predictions`` (classification), ``detections`` (detection)
    and/or a task-specific ``output`` object, which the result carries as ``output`` (absent
    when None)."""

    predictions: list[Prediction] = field(default_factory=list)
    output: dict[str, Any] | None = None
    # A detector's boxes, best first (the result's ``detections``).
    detections: list[Detection] | None = None


class Task(ABC):
    """One kind of answer a model gives (the manifest's ``task``)."""

    name: ClassVar[str] = "?"
    # True: check/answer/postprocess get every output of the model (a list of float32 arrays in
    # the runtime's order) instead of the first one flattened.
    all_outputs: ClassVar[bool] = False

    def prepare(self, image: ImageLike, model: Model) -> tuple[np.ndarray, Any]:
        """The model's input for ``image`` and what :meth:`answer` needs to know about this
        request's preprocessing (default: :meth:`preprocess`, no context; a frame plane made
        by :meth:`plane_encoder`'s ``encode`` is the input already)."""
        if isinstance(image, PlaneTensor):
            return image.tensor, None
        return self.preprocess(image, model), None

    def plane_encoder(self, model: Model) -> PlaneEncoder | None:
        """The frame plane this task takes for ``model`` (the camera makes it at the model's
        input size, ``docs/messages.md``) and how its pixels become the input tensor; None:
        full frames only. By default the manifest's own preprocessing, for a task that keeps
        the default :meth:`prepare` and :meth:`preprocess`; computed once per model."""
        cached = _encoders.setdefault(model, {})
        kind = type(self)
        if kind not in cached:
            cached[kind] = self._plane_encoder(model)
        return cached[kind]

    def _plane_encoder(self, model: Model) -> PlaneEncoder | None:
        kind = type(self)
        if kind.prepare is not Task.prepare or kind.preprocess is not Task.preprocess:
            return None  # a task of its own preprocessing: it says what plane it takes, if any
        manifest = model.manifest
        return PlaneEncoder(
            plane_spec(manifest.preprocess), functools.partial(encode_plane, manifest=manifest)
        )

    def answer(
        self,
        output: Any,
        model: Model,
        *,
        top_k: int,
        threshold: float,
        context: Any = None,
        options: Mapping[str, Any] | None = None,
    ) -> TaskOutput:
        """The model's output for one request -> the task's answer; ``context``: what
        :meth:`prepare` returned for it, ``options``: the component's task options (default:
        :meth:`postprocess`)."""
        return self.postprocess(output, model, top_k=top_k, threshold=threshold)

    def bind(self, model: Model) -> Task:
        """The task ready to serve ``model`` (a task that reads files beside the model, e.g. an
        embedding's head, loads them here; ModelError when it cannot). By default itself."""
        return self

    def preprocess(self, image: ImageLike, model: Model) -> np.ndarray:
        """The model's input for ``image``: by default the manifest's own preprocessing
        (:func:`ggvision.serving.preprocess.preprocess`). ValueError for an unusable image."""
        return preprocess(image, model.manifest)

    @abstractmethod
    def check(self, model: Model, output: Any) -> None:
        """ModelError when ``output`` (of an inference on zeros) does not fit the task."""

    @abstractmethod
    def postprocess(self, output: Any, model: Model, *, top_k: int, threshold: float) -> TaskOutput:
        """The model's output (flattened float32 scores, or every output when
        :attr:`all_outputs`) -> the task's answer."""


# model -> task class -> its plane encoder (a model's manifest never changes once loaded).
_encoders: weakref.WeakKeyDictionary[Model, dict[type[Task], PlaneEncoder | None]] = (
    weakref.WeakKeyDictionary()
)
