"""What every model backend implements. Public methods own checks and errors; subclasses
implement the small ``_load`` / ``_infer`` hooks."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from ggvision.serving.models.store import Model, ModelError


class Backend(ABC):
    """One loaded model on one runtime. Not thread-safe: one worker thread owns it."""

    name: str = "?"
    # The prefix of this backend's log event keys (the model component's, set by create()).
    events: str = "serving"

    def __init__(self, model: Model, *, threads: int = 1, options: dict[str, Any] | None = None):
        self.model = model
        self.threads = max(1, int(threads))
        self.options = dict(options or {})
        self._loaded = False

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.model.manifest.input.shape)

    def load(self) -> None:
        if self._loaded:
            return
        try:
            self._load()
        except ModelError:
            raise
        except Exception as exc:
            raise ModelError(f"{self.name} could not load {self.model.file}: {exc}") from exc
        self._loaded = True

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Run one preprocessed input (shape and dtype of the manifest); returns float32 scores
        of shape (num_classes,) as the model outputs them (logits or probabilities)."""
        if not self._loaded:
            raise ModelError("backend used before load()")
        if tuple(batch.shape) != self.input_shape:
            raise ModelError(f"input shape {batch.shape} != model input {self.input_shape}")
        if batch.dtype != np.dtype(self.model.manifest.input.dtype):
            raise ModelError(
                f"input dtype {batch.dtype} != model input {self.model.manifest.input.dtype}"
            )
        out = self._infer(batch)
        return np.asarray(out, dtype=np.float32).reshape(-1)

    def close(self) -> None:  # noqa: B027 - optional hook, most runtimes free on GC
        """Release the runtime's resources (optional hook)."""

    @abstractmethod
    def _load(self) -> None: ...

    @abstractmethod
    def _infer(self, batch: np.ndarray) -> np.ndarray: ...
