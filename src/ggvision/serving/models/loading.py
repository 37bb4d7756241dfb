"""From a model component's configuration to a model that serves: select it in the store, load
it on its backend, warm it up and check that its output fits its task.

The configuration is any object with the fields of :class:`ModelSettings` (the component's own
pydantic model, e.g. ``ClassifierConfig``): the library reads it, never defines it.
"""

from __future__ import annotations

import platform
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ggvision.contract import ModelInfo
from ggvision.serving.models import backends
from ggvision.serving.models.awsdlr import aws_dlr_model
from ggvision.serving.models.backends.base import Backend
from ggvision.serving.models.store import (
    DEFAULT_BACKEND,
    Model,
    ModelError,
    resolve_model_dir,
    store_root,
)
from ggvision.serving.tasks import Task, get_task


class ModelSettings(Protocol):
    """What selects and loads a model (read-only view of a model component's configuration)."""

    @property
    def model_key(self) -> str: ...
    @property
    def model_store_path(self) -> str: ...
    @property
    def model_store_layout(self) -> str: ...
    @property
    def model_resource_key(self) -> Mapping[str, str]: ...
    @property
    def backend(self) -> str: ...
    @property
    def inference_threads(self) -> int: ...
    @property
    def delegate(self) -> str: ...
    @property
    def delegate_options(self) -> Mapping[str, str]: ...
    @property
    def delegate_fallback(self) -> str: ...
    def model_identity(self) -> tuple[Any, ...]: ...


@dataclass(slots=True)
class ActiveModel:
    """A loaded, warmed backend, the task that serves it and what a result says about it."""

    model: Model
    backend: Backend
    info: ModelInfo
    task: Task

    @classmethod
    def of(cls, model: Model, backend: Backend, task: Task | None = None) -> ActiveModel:
        m = model.manifest
        return cls(
            model,
            backend,
            ModelInfo(name=m.name, version=m.version, backend=backend.name, precision=m.precision),
            task if task is not None else get_task(m.task).bind(model),
        )


def configured_model(cfg: ModelSettings, root: Path) -> Model:
    """The model the configuration names, in either model-store layout.

    ``ggvision`` (default): the variant directory ``modelKey`` with its ``manifest.json``.
    ``aws-dlr``: AWS's DLR model store (``variant.DLR.ImageClassification.ModelStore``): the
    directory ``modelResourceKey[<this machine's architecture>]``, see
    :func:`~ggvision.serving.models.awsdlr.aws_dlr_model`."""
    if cfg.model_store_layout == "ggvision":
        return Model.load(resolve_model_dir(root, cfg.model_key))
    arch = platform.machine()
    key = cfg.model_resource_key.get(arch)
    if not key:
        raise ModelError(
            f"modelResourceKey has no model for this machine's architecture {arch!r} "
            f"(it has {', '.join(sorted(cfg.model_resource_key)) or 'none'})"
        )
    return aws_dlr_model(resolve_model_dir(root, key))


def backend_options(cfg: ModelSettings, backend: str) -> dict[str, Any]:
    """The options of ``backend`` from the configuration: for tflite its delegate (or
    libedgetpu.so.1 for a ``*_edgetpu.tflite`` model) and the fallback."""
    options: dict[str, Any] = {}
    if backend == "tflite":
        options = {"delegate_fallback": cfg.delegate_fallback}
        if cfg.delegate:
            options["delegate"] = cfg.delegate
        if cfg.delegate_options:
            options["delegate_options"] = dict(cfg.delegate_options)
    return options


def prepare_model(
    cfg: ModelSettings, *, events: str = "serving", distribution: str | None = None
) -> ActiveModel:
    """Load, warm and check the configured model: its warm-up inferences on zeros must give
    the output its task expects (a classifier: one score per label). ModelError with the reason
    when it cannot serve (the backend is closed). ``events`` and ``distribution``: see
    :func:`~ggvision.serving.models.backends.create`."""
    model = configured_model(cfg, store_root(cfg.model_store_path))
    task = get_task(model.manifest.task).bind(model)
    name = cfg.backend or DEFAULT_BACKEND[model.manifest.format]
    backend = backends.create(
        name,
        model,
        threads=cfg.inference_threads,
        options=backend_options(cfg, name),
        events=events,
        distribution=distribution,
    )
    backend.load()
    spec = model.manifest.input
    warm = np.zeros(spec.shape, dtype=np.dtype(spec.dtype))
    try:
        try:
            for _ in range(2):
                scores: Any = backend.infer_all(warm) if task.all_outputs else backend.infer(warm)
        except ModelError:
            raise
        except Exception as exc:
            raise ModelError(f"model {model.directory.name} cannot run: {exc}") from exc
        task.check(model, scores)
    except ModelError:
        backend.close()
        raise
    return ActiveModel.of(model, backend, task)
