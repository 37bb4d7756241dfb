"""TorchScript models on PyTorch (CPU).

Only ``torch.jit.load``: a TorchScript archive, never ``torch.load`` of pickled objects. A
quantized model names its engine in the manifest (``torch_engine``: ``onednn``/``x86`` on x86,
``qnnpack`` on ARM); packed weights are built for the engine that is active at load time, so it
is set before loading and checked before each inference.

PyTorch's thread count and quantized engine are process-wide; this backend sets them from its
own configuration before it runs, so two torch backends in one process take turns correctly.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch

from ggvision.serving.models.backends.base import Backend
from ggvision.serving.models.store import ModelError


class TorchBackend(Backend):
    name = "torch"
    _module: Any = None
    _engine: str | None = None

    def _load(self) -> None:
        manifest = self.model.manifest
        engine = manifest.torch_engine
        if engine:
            supported = list(torch.backends.quantized.supported_engines)
            if engine not in supported:
                raise ModelError(
                    f"{self.model.file} needs the quantized engine {engine!r}, which this torch "
                    f"build does not have (it has {', '.join(supported) or 'none'}); use the "
                    "variant built for this CPU"
                )
        self._engine = engine
        self._configure()
        try:
            with warnings.catch_warnings():
                # TorchScript is this backend's format on purpose (one file, no Python code).
                warnings.filterwarnings("ignore", r".*torch\.jit\.load.* is deprecated")
                module = torch.jit.load(  # type: ignore[no-untyped-call, unused-ignore]
                    str(self.model.file), map_location="cpu"
                )
        except (RuntimeError, ValueError, OSError) as exc:
            raise ModelError(
                f"torch cannot load {self.model.file} as TorchScript: {_first_line(exc)}"
            ) from exc
        module.eval()
        # TorchScript declares no input shape: one probe with the manifest's input checks that
        # the model takes it and returns one score per class.
        probe = np.zeros(self.input_shape, dtype=np.dtype(manifest.input.dtype))
        try:
            scores = self._run(module, probe)
        except RuntimeError as exc:
            raise ModelError(
                f"{self.model.file} does not accept the manifest's input "
                f"{list(self.input_shape)} {manifest.input.layout}: {_first_line(exc)}"
            ) from exc
        if self.scores_only and scores.size != manifest.output_size:
            raise ModelError(
                f"{self.model.file}: the model outputs {scores.size} scores for "
                f"{manifest.num_classes} classes"
            )
        self._module = module
        self._batchable = self.scores_only and self._probe_batch(module, probe)

    def _probe_batch(self, module: Any, probe: np.ndarray) -> bool:
        """Whether the model really runs a batch of 2 (TorchScript declares no shapes: a traced
        model may have batch 1 baked in), one score row per input."""
        try:
            scores = self._run(module, np.concatenate([probe, probe], axis=0))
        except RuntimeError:
            return False
        return scores.shape[:1] == (2,) and scores.size == 2 * self.model.manifest.output_size

    def _infer_batch(self, stacked: np.ndarray) -> np.ndarray:
        self._configure()
        return self._run(self._module, stacked)

    def _configure(self) -> None:
        if torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)
        if self._engine and torch.backends.quantized.engine != self._engine:
            torch.backends.quantized.engine = self._engine

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        self._configure()
        return self._run(self._module, batch)

    def _infer_all(self, batch: np.ndarray) -> list[np.ndarray]:
        self._configure()
        with torch.inference_mode():
            out = self._module(torch.from_numpy(batch))
            items = out if isinstance(out, tuple | list) else [out]
            return [np.asarray(o.float().numpy()) for o in items]

    @staticmethod
    def _run(module: Any, batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            out = module(torch.from_numpy(batch))
            if isinstance(out, tuple | list):
                out = out[0]
            return np.asarray(out.float().numpy())

    def close(self) -> None:
        self._module = None
        self._loaded = False


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
