"""Weight imprinting (Qi et al. 2018, as Coral's ImprintingEngine): new classes from a few shots
of an embedding model, nothing retrained.

A shot's ``e = L2norm(embedding)``; a class's weight ``w_c = L2norm(sum of its shots' e)``, the
running sum and count kept so shots can be added later; a class's score is ``scale * (e . w_c)``.
:class:`ClassStore` holds the shots (their embeddings, never the images) under its limits and
persists them atomically (temp file + fsync + rename: a crash mid-write leaves the previous file;
a torn temp file is never read); :meth:`ClassStore.classes` is the immutable snapshot that a task
answers with (:mod:`ggvision.serving.tasks.embedding`).

``extend`` gate (docs/imprinting.md): a learned class answers only when its cosine reaches its
threshold, learned from its shots leave-one-out: ``min(LOO cosines) - THRESHOLD_MARGIN``, clamped
to ``[THRESHOLD_FLOOR, THRESHOLD_CEIL]``; a class with one shot gets ``THRESHOLD_ONE_SHOT``.
"""

from __future__ import annotations

import json
import os
import re
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ggvision.errors import GgvisionError

# The file format's version (key "version" in the .npz).
FORMAT = 1
THRESHOLD_MARGIN = 0.15
THRESHOLD_FLOOR = 0.45
THRESHOLD_CEIL = 0.75
THRESHOLD_ONE_SHOT = 0.5
LABEL_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9 _.\-]*")
MAX_LABEL_LENGTH = 64


class LearnError(GgvisionError):
    """A shot or class operation refused (a bad label, a limit reached, an unknown class)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def l2norm(x: np.ndarray) -> np.ndarray:
    """``x`` scaled to unit length along its last axis (a zero vector stays zero)."""
    v = np.asarray(x, dtype=np.float32)
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    out: np.ndarray = v / np.maximum(n, np.float32(1e-12))
    return out


@dataclass(frozen=True, slots=True)
class Classes:
    """An immutable snapshot of learned classes: labels, L2-normalised weights (C, dim), the
    ``extend`` thresholds (C,) and shot counts (C,)."""

    labels: tuple[str, ...]
    weights: np.ndarray
    thresholds: np.ndarray
    counts: tuple[int, ...]

    @classmethod
    def empty(cls, dim: int) -> Classes:
        return cls((), np.zeros((0, dim), np.float32), np.zeros(0, np.float32), ())

    def __len__(self) -> int:
        return len(self.labels)

    def cosines(self, e: np.ndarray) -> np.ndarray:
        """Cosine of the normalised embedding ``e`` with every class (C,)."""
        out: np.ndarray = self.weights @ e
        return out

    def __add__(self, other: Classes) -> Classes:
        return Classes(
            self.labels + other.labels,
            np.concatenate([self.weights, other.weights]),
            np.concatenate([self.thresholds, other.thresholds]),
            self.counts + other.counts,
        )


def threshold(shots: np.ndarray) -> float:
    """The ``extend`` threshold of a class from its normalised shots (n, dim), leave-one-out:
    each shot's cosine with the class built from the others."""
    n = len(shots)
    if n < 2:
        return THRESHOLD_ONE_SHOT
    total = shots.sum(axis=0)
    loo = l2norm(total[None, :] - shots)
    cos = np.einsum("ij,ij->i", loo, shots)
    return float(np.clip(cos.min() - THRESHOLD_MARGIN, THRESHOLD_FLOOR, THRESHOLD_CEIL))


@dataclass(slots=True)
class Limits:
    """What a store accepts: shots per class, classes in total, label length (and charset)."""

    max_shots: int = 50
    max_classes: int = 100
    max_label_length: int = MAX_LABEL_LENGTH


class ClassStore:
    """Learned classes: per label its normalised shots, running sum and count. Thread-safe."""

    def __init__(self, dim: int, limits: Limits | None = None) -> None:
        self.dim = dim
        self.limits = limits or Limits()
        self._lock = threading.Lock()
        self._shots: dict[str, list[np.ndarray]] = {}
        self._sums: dict[str, np.ndarray] = {}
        # what the embeddings came from (e.g. {"model": variant, "sha256": ...}), saved along
        self.meta: dict[str, Any] = {}
        # label -> (weight, threshold), recomputed only for the class a change touched
        self._cache: dict[str, tuple[np.ndarray, float]] = {}

    # --- operations ------------------------------------------------------------------------
    def check_label(self, label: object) -> str:
        """``label`` when usable as a class name, else LearnError ``INVALID_LABEL``."""
        limit = self.limits.max_label_length
        if not isinstance(label, str) or not label:
            raise LearnError("INVALID_LABEL", "label must be a non-empty string")
        if len(label) > limit:
            raise LearnError("INVALID_LABEL", f"label longer than {limit} characters")
        if not LABEL_PATTERN.fullmatch(label):
            raise LearnError(
                "INVALID_LABEL",
                "label may hold only letters, digits, space, '_', '.', '-' (starting with a "
                "letter or digit)",
            )
        return label

    def check_add(self, label: str) -> None:
        """LearnError when one more shot of ``label`` would break a limit."""
        self.check_label(label)
        with self._lock:
            shots = self._shots.get(label)
            if shots is None and len(self._shots) >= self.limits.max_classes:
                raise LearnError(
                    "LIMIT_REACHED", f"already {self.limits.max_classes} classes (maxClasses)"
                )
            if shots is not None and len(shots) >= self.limits.max_shots:
                raise LearnError(
                    "LIMIT_REACHED",
                    f"class {label!r} already has {self.limits.max_shots} shots (maxShots)",
                )

    def add(self, label: str, embedding: np.ndarray) -> int:
        """Add one shot (a raw embedding) to ``label``; returns the class's shot count."""
        e = l2norm(np.asarray(embedding, np.float32).reshape(-1))
        if e.size != self.dim:
            raise LearnError("INVALID_SHOT", f"embedding has {e.size} values, not {self.dim}")
        if not np.isfinite(e).all() or not e.any():
            raise LearnError("INVALID_SHOT", "embedding is zero or not finite")
        self.check_add(label)
        with self._lock:
            self._shots.setdefault(label, []).append(e)
            self._sums[label] = self._sums.get(label, np.zeros(self.dim, np.float32)) + e
            self._cache.pop(label, None)
            return len(self._shots[label])

    def remove(self, label: str) -> int:
        """Forget ``label``; returns how many shots it had. LearnError ``UNKNOWN_LABEL``."""
        with self._lock:
            shots = self._shots.pop(label, None)
            self._sums.pop(label, None)
            self._cache.pop(label, None)
        if shots is None:
            raise LearnError("UNKNOWN_LABEL", f"no learned class {label!r}")
        return len(shots)

    def reset(self) -> int:
        """Forget every class; returns how many there were."""
        with self._lock:
            n = len(self._shots)
            self._shots.clear()
            self._sums.clear()
            self._cache.clear()
        return n

    def counts(self) -> dict[str, int]:
        with self._lock:
            return {label: len(shots) for label, shots in self._shots.items()}

    def summary(self) -> dict[str, Any]:
        """What is learned, counted: ``classes`` (how many), ``shots`` (in total), ``variant``
        (the embedding variant they were learned on, from :attr:`meta`; None when unknown)."""
        counts = self.counts()
        return {
            "classes": len(counts),
            "shots": sum(counts.values()),
            "variant": self.meta.get("model"),
        }

    def classes(self) -> Classes:
        """The snapshot a task answers with."""
        with self._lock:
            labels = tuple(self._shots)
            if not labels:
                return Classes.empty(self.dim)
            for k in labels:
                if k not in self._cache:
                    self._cache[k] = (l2norm(self._sums[k]), threshold(np.stack(self._shots[k])))
            weights = np.stack([self._cache[k][0] for k in labels])
            thresholds = np.array([self._cache[k][1] for k in labels], np.float32)
            counts = tuple(len(self._shots[k]) for k in labels)
        return Classes(labels, weights, thresholds, counts)

    # --- persistence -----------------------------------------------------------------------
    def arrays(self) -> dict[str, np.ndarray]:
        with self._lock:
            labels = list(self._shots)
            shots = [e for k in labels for e in self._shots[k]]
            return {
                "version": np.array(FORMAT),
                "dim": np.array(self.dim),
                "meta": np.array(json.dumps(self.meta)),
                "labels": np.array(labels, dtype=str),
                "counts": np.array([len(self._shots[k]) for k in labels], np.int64),
                "sums": np.stack([self._sums[k] for k in labels])
                if labels
                else np.zeros((0, self.dim), np.float32),
                "shots": np.stack(shots) if shots else np.zeros((0, self.dim), np.float32),
            }

    def save(self, path: Path) -> None:
        """Write atomically: a temp file beside ``path``, fsync, rename, fsync the directory."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        arrays = self.arrays()
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)  # type: ignore[arg-type]
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    @classmethod
    def load(cls, path: Path, dim: int | None = None, limits: Limits | None = None) -> ClassStore:
        """The store saved at ``path``; LearnError ``CORRUPT`` when it cannot be read."""
        try:
            with np.load(Path(path)) as data:
                arrays = {k: data[k] for k in data.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as exc:
            raise LearnError("CORRUPT", f"cannot read learned classes {path}: {exc}") from exc
        return cls.from_arrays(arrays, dim, limits, source=str(path))

    @classmethod
    def from_arrays(
        cls,
        arrays: dict[str, Any],
        dim: int | None = None,
        limits: Limits | None = None,
        source: str = "arrays",
    ) -> ClassStore:
        try:
            if int(arrays["version"]) != FORMAT:
                raise ValueError(f"format {int(arrays['version'])} (this reads {FORMAT})")
            saved_dim = int(arrays["dim"])
            if dim is not None and dim != saved_dim:
                raise ValueError(f"embeddings of {saved_dim} values; the model's have {dim}")
            labels = [str(x) for x in arrays["labels"]]
            counts = [int(x) for x in arrays["counts"]]
            shots = np.asarray(arrays["shots"], np.float32).reshape(-1, saved_dim)
            if len(counts) != len(labels) or sum(counts) != len(shots):
                raise ValueError("labels, counts and shots disagree")
            meta = json.loads(str(arrays["meta"])) if "meta" in arrays else {}
        except (KeyError, ValueError, TypeError) as exc:
            raise LearnError("CORRUPT", f"invalid learned classes {source}: {exc}") from exc
        store = cls(saved_dim, limits)
        store.meta = dict(meta)
        at = 0
        for label, n in zip(labels, counts, strict=True):
            block = shots[at : at + n]
            at += n
            store._shots[label] = list(block)
            store._sums[label] = block.sum(axis=0).astype(np.float32)
        return store
