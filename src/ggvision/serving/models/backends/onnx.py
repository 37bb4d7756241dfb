"""ONNX models on ONNX Runtime's CPU execution provider.

One inference at a time on one worker thread, so: ``intra_op_num_threads = threads``,
``inter_op_num_threads = 1``, sequential execution, all graph optimisations on.

Options:
    ``allow_spinning``: ``False`` stops ORT's worker threads from busy-waiting between
        inferences (frees the CPU for decoding on a small device, at some latency cost).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnxruntime as ort

from ggvision.serving.models.backends.base import Backend
from ggvision.serving.models.store import ModelError

_ORT_TYPES = {
    "tensor(float)": "float32",
    "tensor(int8)": "int8",
    "tensor(uint8)": "uint8",
}


class OnnxBackend(Backend):
    name = "onnx"
    _session: Any = None
    _input_name = ""
    _output_name = ""
    _output_names: list[str] = []  # set by _load
    _dequant: tuple[float, int] | None = None

    def _load(self) -> None:
        manifest = self.model.manifest
        so = ort.SessionOptions()
        so.intra_op_num_threads = self.threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3  # errors only; warnings go to stderr, not our JSON log
        if not self.options.get("allow_spinning", True):
            so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            session = ort.InferenceSession(
                str(self.model.file), sess_options=so, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # ORT's pybind errors (InvalidProtobuf, Fail) are bare Exception
            raise ModelError(f"onnxruntime cannot load {self.model.file}: {exc}") from exc
        inputs, outputs = session.get_inputs(), session.get_outputs()
        self._output_names = [o.name for o in outputs]
        if len(inputs) != 1 or not outputs:
            raise ModelError(
                f"{self.model.file}: expected 1 input and an output, found {len(inputs)} inputs "
                f"and {len(outputs)} outputs"
            )
        inp, out = inputs[0], outputs[0]
        # A dynamic dimension (None or a name such as "batch") accepts the manifest's value.
        shape = tuple(inp.shape)
        if len(shape) != len(self.input_shape) or any(
            isinstance(d, int) and d != want
            for d, want in zip(shape, self.input_shape, strict=True)
        ):
            raise ModelError(
                f"{self.model.file}: the model's input shape is {list(shape)} but the manifest "
                f"says {list(self.input_shape)}"
            )
        dtype = _ORT_TYPES.get(inp.type, inp.type)
        if dtype != manifest.input.dtype:
            raise ModelError(
                f"{self.model.file}: the model's input type is {dtype} but the manifest says "
                f"{manifest.input.dtype}"
            )
        out_shape = [d for d in out.shape if isinstance(d, int)]
        if (
            self.scores_only
            and len(out_shape) == len(out.shape)
            and int(np.prod(out_shape)) != manifest.output_size
        ):
            raise ModelError(
                f"{self.model.file}: the model outputs {out.shape} scores for "
                f"{manifest.num_classes} classes"
            )
        self._dequant = None
        out_type = _ORT_TYPES.get(out.type, out.type)
        if out_type in ("int8", "uint8") and self.scores_only:
            q = manifest.output.quantization
            if q is None:
                raise ModelError(
                    f"{self.model.file}: the model's output is {out_type} but the manifest "
                    "declares no output.quantization to dequantize it"
                )
            self._dequant = (q.scale, q.zero_point)
        self._session = session
        self._input_name = inp.name
        self._output_name = out.name
        # Batching only where the model's batch dim is dynamic (a name or None); a model
        # exported with batch 1 fixed runs unbatched.
        self._batchable = self.scores_only and bool(shape) and not isinstance(shape[0], int)

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        (scores,) = self._session.run([self._output_name], {self._input_name: batch})
        if self._dequant is not None:
            scale, zero_point = self._dequant
            return (np.asarray(scores, np.float32) - np.float32(zero_point)) * np.float32(scale)
        return np.asarray(scores)

    def _infer_batch(self, stacked: np.ndarray) -> np.ndarray:
        return self._infer(stacked)

    def _infer_all(self, batch: np.ndarray) -> list[np.ndarray]:
        outputs: list[np.ndarray] = self._session.run(self._output_names, {self._input_name: batch})
        return outputs

    def close(self) -> None:
        self._session = None
        self._loaded = False
