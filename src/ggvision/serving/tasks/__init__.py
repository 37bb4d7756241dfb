"""The task plug-ins, keyed by the manifest's ``task``: the built-in ones are imported only when
a model asks for them; :func:`register_task` adds another (one plug-in file plus its model)."""

from __future__ import annotations

import importlib

from ggvision.serving.models.store import ModelError
from ggvision.serving.tasks.base import Task, TaskOutput

__all__ = ["BUILTIN", "Task", "TaskOutput", "get_task", "register_task", "task_names"]

# task name -> (module, class)
BUILTIN: dict[str, tuple[str, str]] = {
    "classification": ("ggvision.serving.tasks.classification", "ClassificationTask"),
    "detection": ("ggvision.serving.tasks.detection", "DetectionTask"),
    "embedding": ("ggvision.serving.tasks.embedding", "EmbeddingTask"),
    "imprinted": ("ggvision.serving.tasks.embedding", "EmbeddingTask"),
}
_registered: dict[str, type[Task]] = {}


def register_task(name: str, task: type[Task]) -> None:
    """Serve models whose manifest says ``"task": name`` with ``task``."""
    if not name:
        raise ValueError("a task needs a name")
    _registered[name] = task


def task_names() -> list[str]:
    return sorted({*BUILTIN, *_registered})


def get_task(name: str) -> Task:
    """The plug-in for ``name``; ModelError for a task nobody registered."""
    cls = _registered.get(name)
    if cls is None:
        try:
            module_name, cls_name = BUILTIN[name]
        except KeyError as exc:
            raise ModelError(f"unknown task {name!r}; known: {', '.join(task_names())}") from exc
        cls = getattr(importlib.import_module(module_name), cls_name)
    return cls()
