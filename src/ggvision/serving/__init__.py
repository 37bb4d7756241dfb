"""Serving models on Greengrass IPC: what every model component (the classifier, the detector)
builds its composition root from.

    intake    the IPC callback: decode, validate, admit into a bounded queue (OVERLOADED, frames
              dropped oldest-first)
    worker    prepare (load, the task's preprocessing) -> infer -> the task's postprocessing ->
              reply, on two threads; model users and retire
    replies   publishing results; the counters and latencies
    recent    recent request ids: a retry with the same id runs once, is answered once
    images    the image a request names: a path in the allowed directories, inline, a frame
    preprocess  an image -> the model's input as its manifest describes it
    models/   the model store and manifests, loading a configured model, the backends (one
              module per runtime, imported only when used)
    tasks/    the task plug-ins (classification, detection and embedding built in;
              :func:`register_task` adds one)
    imprint   weight imprinting: the learned classes' store (shots' embeddings), atomic saves
    learning  live learning over IPC: the learning topic's messages, the task swap, persistence
    swap      validate-then-swap with the candidate kept for the reload
    commands  model-switch commands from AWS IoT Core
    status    the Health report
    updates   defer a deployment's component update while requests are in flight
    config    ServingConfig: the configuration every model component shares
    service   ModelService: a model component's whole service (worker, swapper, commands,
              uplink, status, update deferral), subclassed by the classifier and the detector
              with their names and configuration (imported from ``ggvision.serving.service``)

Runtime packages (LiteRT, ONNX Runtime, PyTorch, DLR) are imported only by the backend that runs
them; numpy and Pillow are needed. A model component passes its role (``classifier``: the
prefix of its log event keys, its thread names) and its distribution (whose extras install the
runtimes) where they are asked for.
"""

from ggvision.serving.commands import CommandSettings, ModelCommands
from ggvision.serving.images import ImageLoader
from ggvision.serving.intake import Intake, Item
from ggvision.serving.models import backends
from ggvision.serving.models.backends import BackendUnavailable
from ggvision.serving.models.backends.base import Backend
from ggvision.serving.models.loading import (
    ActiveModel,
    ModelSettings,
    backend_options,
    configured_model,
    prepare_model,
)
from ggvision.serving.models.store import (
    DEFAULT_BACKEND,
    MODEL_STORE_ENV,
    Manifest,
    Model,
    ModelError,
    model_keys,
    resolve_model_dir,
    store_root,
)
from ggvision.serving.preprocess import decode, preprocess
from ggvision.serving.recent import RecentIds
from ggvision.serving.replies import Replies, Stats
from ggvision.serving.status import health
from ggvision.serving.swap import CANDIDATE_TTL_S, ModelSwapper
from ggvision.serving.tasks import Task, TaskOutput, get_task, register_task, task_names
from ggvision.serving.updates import DeferWhileBusy, outstanding
from ggvision.serving.worker import Worker

__all__ = [
    "CANDIDATE_TTL_S",
    "DEFAULT_BACKEND",
    "MODEL_STORE_ENV",
    "ActiveModel",
    "Backend",
    "BackendUnavailable",
    "CommandSettings",
    "DeferWhileBusy",
    "ImageLoader",
    "Intake",
    "Item",
    "Manifest",
    "Model",
    "ModelCommands",
    "ModelError",
    "ModelSettings",
    "ModelSwapper",
    "RecentIds",
    "Replies",
    "Stats",
    "Task",
    "TaskOutput",
    "Worker",
    "backend_options",
    "backends",
    "configured_model",
    "decode",
    "get_task",
    "health",
    "model_keys",
    "outstanding",
    "prepare_model",
    "preprocess",
    "register_task",
    "resolve_model_dir",
    "store_root",
    "task_names",
]
