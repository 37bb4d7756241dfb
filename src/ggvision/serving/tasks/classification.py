"""Classification, the default task: the manifest's preprocessing, one score per label out,
the best ``top_k`` classes above ``threshold`` as ranked predictions."""

from __future__ import annotations

from typing import Literal

import numpy as np

from ggvision.contract import Prediction
from ggvision.serving.models.store import Model, ModelError
from ggvision.serving.tasks.base import Task, TaskOutput

ScoreKind = Literal["logits", "probabilities"]


def softmax(logits: np.ndarray) -> np.ndarray:
    """Numerically stable softmax over a 1-D score vector (float64 inside, float32 out)."""
    z: np.ndarray = np.asarray(logits, dtype=np.float64).reshape(-1)
    e = np.exp(z - z.max())
    probs: np.ndarray = (e / e.sum()).astype(np.float32)
    return probs


def topk(
    scores: np.ndarray, k: int, threshold: float = 0.0, kind: ScoreKind = "logits"
) -> list[tuple[int, float]]:
    """The ``k`` best classes as ``(index, probability)``, best first, dropping those below
    ``threshold``. Logits go through a softmax; probabilities are used as they are. Ties keep
    the lower index first, so the order is deterministic."""
    if kind not in ("logits", "probabilities"):
        raise ValueError(f"unknown score kind {kind!r}")
    flat = np.asarray(scores).reshape(-1)
    if k <= 0 or flat.size == 0:
        return []
    if not np.isfinite(flat).all():
        raise ValueError("scores contain NaN or infinity")
    probs = softmax(flat) if kind == "logits" else flat.astype(np.float32)
    k = min(k, probs.size)
    if k < probs.size:
        # Partition first (O(n)), then order the k candidates (stable on index).
        part = np.argpartition(-probs, k - 1)[:k]
        cut = probs[part].min()
        cand = np.flatnonzero(probs >= cut)
    else:
        cand = np.arange(probs.size)
    order = cand[np.lexsort((cand, -probs[cand]))][:k]
    return [(int(i), float(probs[i])) for i in order if probs[i] >= threshold]


class ClassificationTask(Task):
    name = "classification"

    def check(self, model: Model, output: np.ndarray) -> None:
        if model.manifest.output.kind == "embedding":
            raise ModelError(
                f"model {model.directory.name} outputs an embedding: its task is 'embedding'"
            )
        if output.size != len(model.labels):
            raise ModelError(
                f"model {model.directory.name} outputs {output.size} scores for "
                f"{len(model.labels)} labels (wrong shape)"
            )

    def postprocess(
        self, output: np.ndarray, model: Model, *, top_k: int, threshold: float
    ) -> TaskOutput:
        labels = model.labels
        kind: ScoreKind = (
            "probabilities" if model.manifest.output.kind == "probabilities" else "logits"
        )
        return TaskOutput(
            predictions=[
                Prediction(label=labels[i], index=i, score=round(float(p), 6))
                for i, p in topk(output, top_k, threshold, kind)
            ]
        )
