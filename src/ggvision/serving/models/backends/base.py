"""What every model backend implements. Public methods own checks and errors; subclasses
implement the small ``_load`` / ``_infer`` hooks."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
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

    @property
    def batchable(self) -> bool:
        """True when one inference may take several requests' inputs stacked on the batch
        dimension (:meth:`infer_batch`); set by the backend at load time from what the model
        and runtime really accept (a model whose input is fixed to batch 1 is not)."""
        return self._loaded and self._batchable

    _batchable = False  # set by a backend's _load where its probe succeeds

    @property
    def auto_batch(self) -> int:
        """The batch size a configuration's ``maxBatch: 0`` (auto) takes on this backend: what
        gained on the measured CPUs (README: Micro-batching); 1 where batching did not gain."""
        return 1

    def infer_batch(self, tensors: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Run several preprocessed inputs (each of the manifest's shape, batch 1) as one
        inference where :attr:`batchable`, else one after the other; returns each input's
        float32 scores, in order, as :meth:`infer` gives them. Single-output models only
        (classification, embedding): a task that reads every output runs :meth:`infer_all`."""
        for tensor in tensors:
            self._check_input(tensor)
        if len(tensors) == 1 or not self.batchable:
            return [self.infer(tensor) for tensor in tensors]
        stacked = np.concatenate(tensors, axis=0)
        out = np.asarray(self._infer_batch(stacked), dtype=np.float32)
        if out.shape[0] != len(tensors):
            raise ModelError(
                f"a batch of {len(tensors)} inputs gave {out.shape[0]} outputs (batch dim)"
            )
        rows = out.reshape(len(tensors), -1)
        return [rows[i] for i in range(len(tensors))]

    def _infer_batch(self, stacked: np.ndarray) -> np.ndarray:
        """The one output for ``stacked`` inputs (batch dim first), batch dim first (hook of a
        backend that sets ``_batchable``)."""
        raise NotImplementedError

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
