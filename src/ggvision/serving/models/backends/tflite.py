"""TFLite models on LiteRT (``ai-edge-litert``), XNNPACK by default, optionally a delegate.

Options:
    ``delegate``: path or name of a delegate library (``libedgetpu.so.1`` for a Coral Edge TPU).
        A model file named ``*_edgetpu.tflite`` (compiled by ``edgetpu_compiler``) gets
        ``libedgetpu.so.1`` when none is given.
    ``delegate_options``: dict passed to the delegate (``{"device": "usb"}``).
    ``delegate_fallback``: ``"error"`` (default) refuses to load when the delegate cannot be
        loaded; ``"cpu"`` logs a warning and runs on the CPU instead. (A model compiled for the
        Edge TPU holds a custom op that only the delegate runs, so ``"cpu"`` suits models that
        run either way.)
    ``xnnpack``: ``False`` runs LiteRT's builtin kernels without the XNNPACK delegate (slower;
        for debugging a delegate problem).
"""

from __future__ import annotations

import ctypes
import logging
from typing import Any

import numpy as np
from ai_edge_litert.interpreter import Interpreter, OpResolverType, load_delegate

from ggvision.serving.models.backends.base import Backend
from ggvision.serving.models.store import ModelError, Quantization

log = logging.getLogger(__name__)

_QUANT_TOLERANCE = 1e-6  # relative; manifests hold the float32 scale as a decimal
EDGETPU_LIBRARY = "libedgetpu.so.1"
EDGETPU_SUFFIX = "_edgetpu.tflite"


class TFLiteBackend(Backend):
    name = "tflite"
    _interpreter: Any = None
    _in_index = 0
    _out_index = 0
    _dequant: tuple[float, int] | None = None
    _batch = 1  # the interpreter's input batch dim now
    # Every output (tensor index, its quantization or None), in get_output_details() order.
    _outputs: list[tuple[int, tuple[float, int] | None]] = []  # set by _load

    def _load(self) -> None:
        manifest = self.model.manifest
        delegates = self._delegates()
        resolver = (
            OpResolverType.AUTO
            if self.options.get("xnnpack", True)
            else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        )
        if not delegates:
            interpreter = self._cpu_interpreter(resolver)
        else:
            try:
                interpreter = self._interpreter_with(delegates, resolver)
            except (ValueError, RuntimeError) as exc:
                if self.options.get("delegate_fallback") != "cpu":
                    raise ModelError(f"tflite cannot load {self.model.file}: {exc}") from exc
                self._warn_fallback(f"the interpreter failed with it: {_first_line(exc)}")
                interpreter = self._cpu_interpreter(resolver)
        inputs, outputs = interpreter.get_input_details(), interpreter.get_output_details()
        if len(inputs) != 1 or not outputs or (self.scores_only and len(outputs) != 1):
            raise ModelError(
                f"{self.model.file}: expected 1 input and "
                f"{'1 output' if self.scores_only else 'an output'}, "
                f"found {len(inputs)} and {len(outputs)}"
            )
        inp, out = inputs[0], outputs[0]
        shape = tuple(int(d) for d in inp["shape"])
        if shape != self.input_shape:
            raise ModelError(
                f"{self.model.file}: the model's input shape is {shape} but the manifest says "
                f"{self.input_shape}"
            )
        dtype = np.dtype(inp["dtype"])
        if dtype != np.dtype(manifest.input.dtype):
            raise ModelError(
                f"{self.model.file}: the model's input dtype is {dtype} but the manifest says "
                f"{manifest.input.dtype}"
            )
        if dtype.kind in "iu":
            _check_quant("input", _quant(inp), manifest.input.quantization, self.model.file)
        self._outputs = [(int(o["index"]), _dequant_of(o)) for o in outputs]
        size = int(np.prod(out["shape"]))
        if self.scores_only and size != manifest.output_size:
            raise ModelError(
                f"{self.model.file}: the model outputs {size} scores for "
                f"{manifest.num_classes} classes"
            )
        self._dequant = None
        if self.scores_only and np.dtype(out["dtype"]).kind in "iu":
            q = _quant(out)
            _check_quant("output", q, manifest.output.quantization, self.model.file)
            self._dequant = q
        self._interpreter = interpreter
        self._in_index = int(inp["index"])
        self._out_index = int(out["index"])
        self._batch = 1
        # Batching: the input resized on its batch dim (XNNPACK re-plans once per size). Only on
        # the CPU: a delegate's compiled graph keeps its own shapes.
        self._batchable = (
            not delegates and self.scores_only and len(shape) > 1 and shape[0] == 1
        ) and self._probe_batch()

    def _library(self) -> str | None:
        library = self.options.get("delegate")
        if library:
            return str(library)
        return EDGETPU_LIBRARY if self.model.file.name.endswith(EDGETPU_SUFFIX) else None

    def _cpu_interpreter(self, resolver: Any) -> Any:
        try:
            return self._interpreter_with([], resolver)
        except (ValueError, RuntimeError) as exc:
            hint = ""
            if self.model.file.name.endswith(EDGETPU_SUFFIX):
                hint = (
                    " (a model compiled for the Edge TPU keeps its compiled ops in a custom op "
                    "that only the Edge TPU runs: for a CPU fallback use the model's CPU version)"
                )
            raise ModelError(f"tflite cannot load {self.model.file}{hint}: {exc}") from exc

    def _interpreter_with(self, delegates: list[Any], resolver: Any) -> Any:
        interpreter = Interpreter(
            model_path=str(self.model.file),
            num_threads=self.threads,
            experimental_delegates=delegates or None,
            experimental_op_resolver_type=resolver,
        )
        interpreter.allocate_tensors()
        return interpreter

    def _warn_fallback(self, reason: str) -> None:
        library = str(self._library())
        log.warning(
            "delegate %s: %s; running %s on the CPU",
            library,
            reason,
            self.model.file.name,
            extra={"event": f"{self.events}.delegate_fallback", "delegate": library},
        )

    def _delegates(self) -> list[Any]:
        library = self._library()
        if not library:
            return []
        try:
            # Checked first with ctypes: LiteRT's Delegate object fails noisily in its __del__
            # when the library is missing or is not a delegate plugin.
            plugin = ctypes.CDLL(str(library))
            if not hasattr(plugin, "tflite_plugin_create_delegate"):
                raise ValueError("the library is not a TFLite delegate plugin")
            return [load_delegate(str(library), self.options.get("delegate_options"))]
        except (OSError, ValueError, RuntimeError) as exc:
            # OSError: library not found; ValueError: not a plugin, or it would not create a
            # delegate (no device attached).
            reason = _first_line(exc)
            if self.options.get("delegate_fallback") == "cpu":
                self._warn_fallback(f"cannot be loaded ({reason})")
                return []
            raise ModelError(
                f"delegate {library} cannot be loaded: {reason}. Install its runtime and "
                "connect the device, or set the delegate fallback to 'cpu' to run on the CPU"
            ) from exc

    @property
    def auto_batch(self) -> int:
        """4 for an integer (int8) model: XNNPACK's int8 kernels gained 1.04-1.29x at batch
        4 on the measured CPU (batch 8 no more, often less); 1 for a float one, whose gain was
        within the noise (README: Micro-batching)."""
        return 4 if np.dtype(self.model.manifest.input.dtype).kind in "iu" else 1

    def _resize(self, n: int) -> None:
        """The interpreter's input batch dim set to ``n`` (nothing when it is already)."""
        if n == self._batch:
            return
        interpreter = self._interpreter
        interpreter.resize_tensor_input(self._in_index, [n, *self.input_shape[1:]], strict=False)
        interpreter.allocate_tensors()
        self._batch = n

    def _probe_batch(self) -> bool:
        """Whether the model really runs a batch of 2 (its output gets the batch dim), left at
        batch 1 either way."""
        try:
            self._resize(2)
            shape = [int(d) for d in self._interpreter.get_output_details()[0]["shape"]]
            ok = shape[:1] == [2] and int(np.prod(shape)) == 2 * self.model.manifest.output_size
        except (ValueError, RuntimeError) as exc:
            log.debug("tflite: %s runs unbatched: %s", self.model.file.name, _first_line(exc))
            ok = False
        try:
            self._batch = -1  # whatever the failed resize left: set batch 1 again
            self._resize(1)
        except (ValueError, RuntimeError) as exc:
            raise ModelError(f"tflite cannot run {self.model.file} at batch 1: {exc}") from exc
        return ok

    def _infer_batch(self, stacked: np.ndarray) -> np.ndarray:
        self._resize(int(stacked.shape[0]))
        return self._scores(stacked)

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        self._resize(1)
        return self._scores(batch)

    def _scores(self, batch: np.ndarray) -> np.ndarray:
        self._interpreter.set_tensor(self._in_index, batch)
        self._interpreter.invoke()
        scores: np.ndarray = self._interpreter.get_tensor(self._out_index)
        if self._dequant is not None:
            scale, zero_point = self._dequant
            scores = (scores.astype(np.float32) - np.float32(zero_point)) * np.float32(scale)
        return scores

    def _infer_all(self, batch: np.ndarray) -> list[np.ndarray]:
        self._resize(1)
        interpreter = self._interpreter
        interpreter.set_tensor(self._in_index, batch)
        interpreter.invoke()
        out: list[np.ndarray] = []
        for index, q in self._outputs:
            # get_tensor copies: the interpreter reuses its buffers on the next invoke.
            value: np.ndarray = interpreter.get_tensor(index)
            if q is not None:
                value = (value.astype(np.float32) - np.float32(q[1])) * np.float32(q[0])
            out.append(value)
        return out

    def close(self) -> None:
        self._interpreter = None
        self._loaded = False


def _quant(detail: dict[str, Any]) -> tuple[float, int]:
    params = detail.get("quantization_parameters") or {}
    scales = np.asarray(params.get("scales", []))
    zeros = np.asarray(params.get("zero_points", []))
    if scales.size != 1 or zeros.size != 1:
        raise ModelError(
            f"tensor {detail.get('name')!r} is quantized per channel or not at all "
            f"({scales.size} scales); a classifier input/output needs one scale and zero point"
        )
    return float(scales[0]), int(zeros[0])


def _dequant_of(detail: dict[str, Any]) -> tuple[float, int] | None:
    """(scale, zero point) of an integer output with one scale; None for a float output (or an
    integer one without quantization: class ids, counts)."""
    if np.dtype(detail["dtype"]).kind not in "iu":
        return None
    params = detail.get("quantization_parameters") or {}
    scales = np.asarray(params.get("scales", []))
    zeros = np.asarray(params.get("zero_points", []))
    if scales.size != 1 or zeros.size != 1 or float(scales[0]) == 0.0:
        return None
    return float(scales[0]), int(zeros[0])


def _check_quant(
    which: str, actual: tuple[float, int], declared: Quantization | None, file: object
) -> None:
    scale, zero_point = actual
    if declared is None:
        raise ModelError(
            f"{file}: the model's {which} is quantized (scale {scale}, zero point {zero_point}) "
            f"but the manifest declares no {which}.quantization"
        )
    if abs(declared.scale - scale) > _QUANT_TOLERANCE * abs(scale) or (
        declared.zero_point != zero_point
    ):
        raise ModelError(
            f"{file}: the model's {which} quantization is scale {scale}, zero point {zero_point} "
            f"but the manifest says {declared.scale}, {declared.zero_point}"
        )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
