"""What every model backend implements. Public methods own checks and errors; subclasses
implement the small ``_load`` / ``_infer`` hooks."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from ggvision.serving.models.store import Model, ModelError

# Tasks whose models have one output read by infer().
SINGLE_OUTPUT_TASKS = frozenset({"classification", "embedding", "imprinted"})


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

    @property
    def scores_only(self) -> bool:
        """True for a classifier or an embedding model: one output of ``output_size`` values
        (a score per label, or the embedding), dequantized, checked at load time. Other tasks'
        models may have several outputs of any shape (their task checks them on the warm-up
        run)."""
        return self.model.manifest.task in SINGLE_OUTPUT_TASKS

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Run one preprocessed input (shape and dtype of the manifest); returns float32 scores
        of shape (num_classes,) as the model outputs them (logits or probabilities)."""
        self._check_input(batch)
        out = self._infer(batch)
        return np.asarray(out, dtype=np.float32).reshape(-1)

    def infer_all(self, batch: np.ndarray) -> list[np.ndarray]:
        """Run one preprocessed input; returns every output of the model, in the runtime's own
        order (tflite ``get_output_details()``, onnxruntime ``get_outputs()``), each as float32
        in its own shape (quantized outputs dequantized). For tasks that read several outputs
        (detection); classification keeps :meth:`infer`."""
        self._check_input(batch)
        return [np.asarray(o, dtype=np.float32) for o in self._infer_all(batch)]

    def _check_input(self, batch: np.ndarray) -> None:
        if not self._loaded:
            raise ModelError("backend used before load()")
        if tuple(batch.shape) != self.input_shape:
            raise ModelError(f"input shape {batch.shape} != model input {self.input_shape}")
        if batch.dtype != np.dtype(self.model.manifest.input.dtype):
            raise ModelError(
                f"input dtype {batch.dtype} != model input {self.model.manifest.input.dtype}"
            )

    def _infer_all(self, batch: np.ndarray) -> list[np.ndarray]:
        """Every output (hook; by default the one output :meth:`_infer` gives)."""
        return [self._infer(batch)]

    def close(self) -> None:  # noqa: B027 - optional hook, most runtimes free on GC
        """Release the runtime's resources (optional hook)."""

    @abstractmethod
    def _load(self) -> None: ...

    @abstractmethod
    def _infer(self, batch: np.ndarray) -> np.ndarray: ...
