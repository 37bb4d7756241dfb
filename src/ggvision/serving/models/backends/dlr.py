"""DLR (SageMaker Neo) models on ``dlr==1.6.0`` (extra ``[dlr]``), a TVM 0.8 graph runtime.

A DLR model is a directory with exactly one ``*.so``, one ``*.json`` and one ``*.params`` (and
optionally a ``*.meta``); the manifest's ``file`` names the ``.so`` in it. When that directory
holds a ``libdlr.so`` too, DLR runs the model on it (AWS's rule), else on the one in the wheel.

* **No phone-home.** DLR reports to an AWS endpoint on import and on every model load unless its
  ``counter/ccm_config.json`` says ``{"enable_phone_home": false}``. :func:`import_dlr` writes
  that file before DLR is first imported (so the import itself sends nothing); where the package
  directory is read-only it replaces DLR's counter module with one that does nothing.
* **Threads.** TVM's thread pool reads ``TVM_NUM_THREADS`` when it starts, once per process: the
  first DLR model of a process sets it from ``threads``; a later model with another count warns.
* **Input checks.** DLR checks only the element count of an input; this backend checks the
  model's own input shape and dtype (from its ``.meta`` or graph) against the manifest's, so a
  layout mistake (NCHW data for an NHWC model) is an error, not wrong answers.
"""

from __future__ import annotations

import ctypes
import importlib
import importlib.util
import json
import logging
import os
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np

from ggvision.serving.models.backends.base import Backend
from ggvision.serving.models.store import ModelError

log = logging.getLogger(__name__)

PHONE_HOME_CONFIG = "ccm_config.json"
_THREADS_ENV = "TVM_NUM_THREADS"


def disable_phone_home() -> str:
    """Switch DLR's phone-home off before DLR is imported; returns how ("config" or "stub").

    Raises ModuleNotFoundError (name ``dlr``) when DLR is not installed."""
    spec = importlib.util.find_spec("dlr")  # finds the package without running it
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("No module named 'dlr'", name="dlr")
    config = Path(next(iter(spec.submodule_search_locations))) / "counter" / PHONE_HOME_CONFIG
    try:
        current: dict[str, Any] = {}
        if config.is_file():
            loaded = json.loads(config.read_text(encoding="utf-8"))
            current = loaded if isinstance(loaded, dict) else {}
        if current.get("enable_phone_home") is not False:
            current["enable_phone_home"] = False
            config.write_text(json.dumps(current), encoding="utf-8")
        return "config"
    except (OSError, ValueError):
        # A read-only install: DLR's counter package is replaced by one whose decorator does
        # nothing (dlr.api imports only ``call_phone_home`` from it).
        stub = types.ModuleType("dlr.counter")
        stub.call_phone_home = lambda func: func  # type: ignore[attr-defined]
        sys.modules["dlr.counter"] = stub
        return "stub"


def import_dlr() -> Any:
    """``dlr``, imported with its phone-home off."""
    if "dlr" not in sys.modules:
        disable_phone_home()
    module = importlib.import_module("dlr")
    # Imported before us (by someone else): its reporter is dropped in memory, which sends
    # nothing either (a model load reports only while the module's MGR is set).
    reporter = sys.modules.get("dlr.counter.phone_home")
    if reporter is not None and getattr(reporter, "MGR", None) is not None:
        setattr(reporter, "MGR", None)  # noqa: B010 - a module of DLR's, untyped
    return module


dlr = import_dlr()


class DLRBackend(Backend):
    name = "dlr"
    _model: Any = None
    _input_name = ""
    _model_shape: tuple[int, ...] = ()

    def _load(self) -> None:
        manifest = self.model.manifest
        directory = self.model.file.parent
        _set_threads(self.threads, self.events)
        try:
            model = dlr.DLRModel(str(directory), "cpu", 0)
        except Exception as exc:  # DLRError, ValueError (several .so/.json/.params), OSError
            hint = ""
            if type(exc).__name__ == "DLRLibraryNotFound":
                hint = (
                    " (PyPI's dlr 1.6.0 carries libdlr.so only in its x86_64 wheel: put a "
                    "libdlr.so built for this machine in the model directory)"
                )
            raise ModelError(f"dlr cannot load {directory}: {_dlr_message(exc)}{hint}") from exc
        names = list(model.get_input_names())
        if len(names) != 1:
            raise ModelError(f"{directory}: expected 1 input, the model has {names}")
        dtype = str(model.get_input_dtypes()[0])
        if dtype != manifest.input.dtype:
            raise ModelError(
                f"{directory}: the model's input dtype is {dtype} but the manifest says "
                f"{manifest.input.dtype}"
            )
        shape = input_shape(model)
        if manifest.input_as_is:
            # AWS's contract: the resized image as it is, reshaped; DLR's own check.
            if int(np.prod(shape)) != int(np.prod(self.input_shape)):
                raise ModelError(
                    f"{directory}: the model's input {list(shape)} does not hold one "
                    f"{list(self.input_shape)} image ({int(np.prod(shape))} != "
                    f"{int(np.prod(self.input_shape))} elements)"
                )
        elif shape != self.input_shape:
            raise ModelError(
                f"{directory}: the model's input shape is {list(shape)} but the manifest says "
                f"{list(self.input_shape)} ({manifest.input.layout or 'no layout'}); DLR would "
                "accept any input of the same element count, so check input.shape and "
                "input.layout"
            )
        size = _output_size(model)
        if self.scores_only and size != manifest.output_size:
            raise ModelError(
                f"{directory}: the model outputs {size} scores for {manifest.num_classes} classes"
            )
        self._model = model
        self._input_name = names[0]
        self._model_shape = shape

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        outputs = self._model.run({self._input_name: batch.reshape(self._model_shape)})
        return np.asarray(outputs[0])

    def _infer_all(self, batch: np.ndarray) -> list[np.ndarray]:
        outputs = self._model.run({self._input_name: batch.reshape(self._model_shape)})
        return [np.asarray(o) for o in outputs]

    def close(self) -> None:
        self._model = None
        self._loaded = False


def input_shape(model: Any) -> tuple[int, ...]:
    """The model's declared input shape, from DLR's C API (the graph's or ``.meta``'s shape)."""
    impl = model._impl
    size, dim = ctypes.c_longlong(), ctypes.c_int()
    handle = ctypes.byref(impl.handle)
    impl._check_call(impl._lib.GetDLRInputSizeDim(handle, 0, ctypes.byref(size), ctypes.byref(dim)))
    shape = np.zeros(dim.value, dtype=np.int64)
    pointer = shape.ctypes.data_as(ctypes.POINTER(ctypes.c_longlong))
    impl._check_call(impl._lib.GetDLRInputShape(handle, 0, pointer))
    return tuple(int(d) for d in shape)


def _output_size(model: Any) -> int:
    size, _dim = model._impl._get_output_size_dim(0)
    return int(size)


_pool_threads: list[int] = []  # the TVM_NUM_THREADS this process's first DLR model set


def _set_threads(threads: int, events: str) -> None:
    if not _pool_threads:
        os.environ[_THREADS_ENV] = str(threads)
        _pool_threads.append(threads)
    elif _pool_threads[0] != threads:
        log.warning(
            "dlr: TVM's thread pool of this process runs %d threads; %d requested (a restart "
            "applies it)",
            _pool_threads[0],
            threads,
            extra={"event": f"{events}.dlr_threads"},
        )


def _dlr_message(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
