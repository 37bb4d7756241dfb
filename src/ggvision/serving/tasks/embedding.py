"""Embedding models: the classes of their head plus the classes learned by weight imprinting
(:mod:`ggvision.serving.imprint`).

A model with ``task: embedding`` outputs its embedding; its ImageNet head (``embedding.head``,
weight | bias) gives the logits, so with no learned class it answers as the classifier it came
from. ``task: imprinted`` (a variant written by ``ggvision learn``) carries learned classes in
``imprint.classes``; live learning adds more (:meth:`EmbeddingTask.with_classes`). Modes:

* ``replace``: only the learned classes answer: softmax of ``scale * cosine``;
* ``extend``: the head's logits stay intact; the learned classes answer (softmax of ``scale *
  cosine`` over them) only when the best one's cosine reaches its threshold, else the head's
  softmax answers exactly as the plain classifier does.

A bound instance is immutable (several threads may use it); binding (:meth:`bind`) loads its
files. Learned class ``j`` has index ``len(head) + j`` in ``extend`` and ``j`` in ``replace``.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from ggvision.contract import Prediction
from ggvision.serving.imprint import Classes, ClassStore, LearnError, l2norm
from ggvision.serving.models.store import Model, ModelError
from ggvision.serving.tasks.base import Task, TaskOutput
from ggvision.serving.tasks.classification import topk

Mode = Literal["extend", "replace"]


class EmbeddingTask(Task):
    name = "embedding"

    def __init__(
        self,
        head: np.ndarray | None = None,
        head_labels: tuple[str, ...] = (),
        own: Classes | None = None,
        live: Classes | None = None,
        mode: Mode = "extend",
        scale: float = 10.0,
    ) -> None:
        self.head = head
        self.head_labels = head_labels
        self.own = own  # the variant's own learned classes
        self.live = live  # those learned on the device
        self.mode: Mode = mode
        self.scale = scale
        self.classes = _join(own, live)

    # --- binding -------------------------------------------------------------------------------
    def bind(self, model: Model) -> EmbeddingTask:
        m = model.manifest
        if m.embedding is None:
            raise ModelError(f"model {model.directory.name}: task {m.task} needs 'embedding'")
        dim = m.embedding.dim
        head = _load_head(model, dim)
        own: Classes | None = None
        mode: Mode = "extend"
        scale = 10.0
        if m.imprint is not None:
            mode, scale = m.imprint.mode, m.imprint.scale
            try:
                own = ClassStore.load(model.directory / m.imprint.classes, dim).classes()
            except LearnError as exc:
                raise ModelError(f"model {model.directory.name}: {exc}") from exc
        base = len(head)
        want = base + len(own or ()) if mode == "extend" else len(own or ())
        if len(model.labels) != want:
            raise ModelError(
                f"model {model.directory.name}: {len(model.labels)} labels, expected {want}"
            )
        return EmbeddingTask(head, tuple(model.labels[:base]), own, None, mode, scale)

    def with_classes(self, live: Classes | None, mode: Mode | None = None) -> EmbeddingTask:
        """The same model answering with the device's learned classes ``live``; ``mode`` only
        when the variant does not fix it (no own classes)."""
        chosen = self.mode if self.own is not None or mode is None else mode
        return EmbeddingTask(self.head, self.head_labels, self.own, live, chosen, self.scale)

    @property
    def dim(self) -> int:
        return 0 if self.head is None else self.head.shape[1] - 1

    def embed(self, output: np.ndarray) -> np.ndarray:
        """The L2-normalised embedding of a model output."""
        return l2norm(np.asarray(output, np.float32).reshape(-1))

    def labels(self) -> list[str]:
        """Every label this task answers with, by index."""
        learned = list(self.classes.labels) if self.classes is not None else []
        return learned if self.mode == "replace" else [*self.head_labels, *learned]

    # --- the task ------------------------------------------------------------------------------
    def check(self, model: Model, output: np.ndarray) -> None:
        if self.head is None:
            raise ModelError(f"model {model.directory.name}: embedding task not bound")
        if output.size != self.dim:
            raise ModelError(
                f"model {model.directory.name} outputs {output.size} values for an embedding of "
                f"{self.dim} (wrong shape)"
            )

    def postprocess(
        self, output: np.ndarray, model: Model, *, top_k: int, threshold: float
    ) -> TaskOutput:
        assert self.head is not None
        raw = np.asarray(output, np.float32).reshape(-1)
        classes = self.classes
        if classes is not None and len(classes):
            cos = classes.cosines(self.embed(raw))
            best = int(np.argmax(cos))
            if self.mode == "replace" or cos[best] >= classes.thresholds[best]:
                offset = 0 if self.mode == "replace" else len(self.head)
                return TaskOutput(
                    predictions=[
                        Prediction(label=classes.labels[i], index=offset + i, score=round(p, 6))
                        for i, p in topk(self.scale * cos, top_k, threshold)
                    ]
                )
        elif self.mode == "replace":
            return TaskOutput(predictions=[])
        logits = self.head[:, :-1] @ raw + self.head[:, -1]
        return TaskOutput(
            predictions=[
                Prediction(label=self.head_labels[i], index=i, score=round(p, 6))
                for i, p in topk(logits, top_k, threshold)
            ]
        )


def _join(own: Classes | None, live: Classes | None) -> Classes | None:
    if own is None:
        return live
    return own if live is None else own + live


def _load_head(model: Model, dim: int) -> np.ndarray:
    m = model.manifest
    assert m.embedding is not None
    path = (model.directory / m.embedding.head).resolve()
    if model.directory.resolve() not in path.parents:
        raise ModelError(f"model {model.directory.name}: head points outside its directory")
    try:
        head = np.load(path)
    except (OSError, ValueError) as exc:
        raise ModelError(f"model {model.directory.name}: cannot read head {path}: {exc}") from exc
    if head.ndim != 2 or head.shape[1] != dim + 1:
        raise ModelError(
            f"model {model.directory.name}: head shape {head.shape}, expected (classes, {dim + 1})"
        )
    out: np.ndarray = np.ascontiguousarray(head, dtype=np.float32)
    return out
