"""Model scores -> ranked predictions."""

from __future__ import annotations

from typing import Literal

import numpy as np

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
