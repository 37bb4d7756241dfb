"""The explicit backend registry. Each entry is imported only when used, so a device installs
only the runtime it runs; a missing runtime is a clear error naming the extra to install."""

from __future__ import annotations

import importlib
from typing import Any

from ggvision_classifier.backends.base import Backend
from ggvision_classifier.modelstore import Model, ModelError


class BackendUnavailable(ModelError):
    """The runtime package of a backend is not installed."""


# name -> (module, class, pip package, extra)
REGISTRY: dict[str, tuple[str, str, str, str]] = {
    "tflite": ("ggvision_classifier.backends.tflite", "TFLiteBackend", "ai-edge-litert", "tflite"),
    "onnx": ("ggvision_classifier.backends.onnx", "OnnxBackend", "onnxruntime", "onnx"),
    "torch": ("ggvision_classifier.backends.torch", "TorchBackend", "torch", "torch"),
    "dlr": ("ggvision_classifier.backends.dlr", "DLRBackend", "dlr", "dlr"),
    "fake": ("ggvision_classifier.backends.fake", "FakeBackend", "numpy", "-"),
}


def create(
    name: str, model: Model, *, threads: int = 1, options: dict[str, Any] | None = None
) -> Backend:
    try:
        module_name, cls_name, package, extra = REGISTRY[name]
    except KeyError as exc:
        raise ModelError(f"unknown backend {name!r}; known: {', '.join(sorted(REGISTRY))}") from exc
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        # Only a missing third-party module is a missing runtime; a missing module of our own
        # is a bug and propagates as it is.
        missing = (exc.name or "").partition(".")[0]
        if missing in ("", "ggvision", "ggvision_classifier"):
            raise
        raise BackendUnavailable(
            f"backend {name} needs package {package} (module {missing!r} is not installed): "
            f"install extra [{extra}] (pip install 'ggvision-classifier[{extra}]')"
        ) from exc
    cls: type[Backend] = getattr(module, cls_name)
    return cls(model, threads=threads, options=options)
