"""The explicit backend registry, keyed by the backend's name (its ``name`` literal; the
manifest's ``format`` picks the default one: ``store.DEFAULT_BACKEND``). One module per
runtime, each imported only when used, so a device installs only the runtime it runs; a missing
runtime is a clear error naming the extra of the model component to install."""

from __future__ import annotations

import importlib
from typing import Any

from ggvision.serving.models.backends.base import Backend
from ggvision.serving.models.store import Model, ModelError


class BackendUnavailable(ModelError):
    """The runtime package of a backend is not installed."""


# name -> (module, class, pip package, extra)
REGISTRY: dict[str, tuple[str, str, str, str]] = {
    "tflite": (
        "ggvision.serving.models.backends.tflite",
        "TFLiteBackend",
        "ai-edge-litert",
        "tflite",
    ),
    "onnx": ("ggvision.serving.models.backends.onnx", "OnnxBackend", "onnxruntime", "onnx"),
    "torch": ("ggvision.serving.models.backends.torch", "TorchBackend", "torch", "torch"),
    "dlr": ("ggvision.serving.models.backends.dlr", "DLRBackend", "dlr", "dlr"),
    "fake": ("ggvision.serving.models.backends.fake", "FakeBackend", "numpy", "-"),
}


def create(
    name: str,
    model: Model,
    *,
    threads: int = 1,
    options: dict[str, Any] | None = None,
    events: str = "serving",
    distribution: str | None = None,
) -> Backend:
    """A backend ``name`` for ``model`` (not loaded yet). ``events``: the prefix of its log
    events' keys (the model component's, e.g. ``classifier``); ``distribution``: the model
    component's package, whose extras install the runtimes (named in BackendUnavailable)."""
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
        if missing in ("", "ggvision") or missing.startswith("ggvision_"):
            raise
        how = f" (pip install '{distribution}[{extra}]')" if distribution else ""
        raise BackendUnavailable(
            f"backend {name} needs package {package} (module {missing!r} is not installed): "
            f"install extra [{extra}]{how}"
        ) from exc
    cls: type[Backend] = getattr(module, cls_name)
    backend = cls(model, threads=threads, options=options)
    backend.events = events
    return backend
