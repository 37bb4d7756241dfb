"""Models in a model-store component: a directory per variant with ``manifest.json``.

A model component finds the store through its recipe, as AWS's ML components do:
``{<model-store component>:artifacts:decompressedPath}`` (in ``$GGV_MODEL_STORE``) plus a
configured key (the variant directory name), never a hard-coded versioned path.

The manifest's ``task`` (default ``classification``) names the task plug-in that pre- and
post-processes for the model (:mod:`ggvision.serving.tasks`); manifests without it load as
before. An ``embedding`` model outputs ``embedding.dim`` values (not one score per label) and
keeps its ImageNet head beside it; an ``imprinted`` one adds the classes learned by weight
imprinting (``imprint``: docs/imprinting.md).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ggvision.errors import GgvisionError

MODEL_STORE_ENV = "GGV_MODEL_STORE"


class ModelError(GgvisionError):
    """A model cannot be found, validated or loaded."""


class Quantization(BaseModel):
    scale: float
    zero_point: int


class TensorSpec(BaseModel):
    model_config = ConfigDict(extra="allow")
    shape: list[int] = Field(default_factory=list)
    layout: Literal["NHWC", "NCHW"] | None = None
    dtype: Literal["float32", "int8", "uint8"] = "float32"
    quantization: Quantization | None = None
    kind: Literal["logits", "probabilities", "embedding"] = "logits"


class Preprocess(BaseModel):
    color: Literal["RGB", "BGR"] = "RGB"
    crop_fraction: float = Field(0.875, gt=0.0, le=1.0)
    resize: int = Field(224, gt=0)
    interpolation: Literal["bicubic", "bilinear", "nearest"] = "bicubic"
    mean: list[float] = Field(default_factory=lambda: [127.0, 127.0, 127.0])
    std: list[float] = Field(default_factory=lambda: [128.0, 128.0, 128.0])
    # True: the whole image resized to resize x resize (aspect ratio not kept, no crop), as
    # AWS's DLR image classification feeds its models.
    resize_only: bool = False


class EmbeddingSpec(BaseModel):
    """An embedding model's output and its classifier head (weight | bias columns, float32
    (classes, dim + 1), a .npy beside the model)."""

    model_config = ConfigDict(extra="allow")
    dim: int = Field(gt=0)
    head: str = "imagenet_head.npy"


class ImprintSpec(BaseModel):
    """The classes learned by weight imprinting (a .npz of :mod:`ggvision.serving.imprint`)
    and how they answer: ``replace`` (only they), ``extend`` (beside the head's classes)."""

    model_config = ConfigDict(extra="allow")
    mode: Literal["extend", "replace"] = "extend"
    classes: str = "imprinted.npz"
    scale: float = Field(10.0, gt=0.0)


class Manifest(BaseModel):
    model_config = ConfigDict(extra="allow")
    schema_: int = Field(1, alias="schema")
    name: str
    version: str
    variant: str
    format: Literal["tflite", "onnx", "torchscript", "dlr"]
    precision: str
    file: str
    labels: str = "labels.txt"
    num_classes: int = 1000
    input: TensorSpec
    output: TensorSpec = Field(default_factory=lambda: TensorSpec())
    preprocess: Preprocess = Field(default_factory=lambda: Preprocess())
    torch_engine: str | None = None
    # The task plug-in of ggvision.serving.tasks that serves the model.
    task: str = "classification"
    sha256: str | None = None
    # task embedding / imprinted: the embedding's size and head; the learned classes.
    embedding: EmbeddingSpec | None = None
    imprint: ImprintSpec | None = None
    # True: the preprocessed image goes to the model as it is, reshaped to the model's input
    # shape (only the element count is checked) - AWS's DLR model-store contract.
    input_as_is: bool = False

    @property
    def output_size(self) -> int:
        """How many values the model outputs: its embedding's size, else one per class."""
        return self.embedding.dim if self.embedding is not None else self.num_classes


DEFAULT_BACKEND = {"tflite": "tflite", "onnx": "onnx", "torchscript": "torch", "dlr": "dlr"}


class Model:
    """A resolved model variant: its directory, manifest and labels."""

    def __init__(self, directory: Path, manifest: Manifest, labels: list[str]) -> None:
        self.directory = directory
        self.manifest = manifest
        self.labels = labels

    @property
    def file(self) -> Path:
        return self.directory / self.manifest.file

    @classmethod
    def load(cls, directory: Path, *, verify_sha256: bool = True) -> Model:
        directory = Path(directory)
        mpath = directory / "manifest.json"
        try:
            raw = json.loads(mpath.read_text(encoding="utf-8"))
            manifest = Manifest.model_validate(raw)
        except FileNotFoundError as exc:
            raise ModelError(f"no model at {directory} (manifest.json missing)") from exc
        except (ValueError, ValidationError) as exc:
            raise ModelError(f"invalid manifest {mpath}: {exc}") from exc
        model_file = (directory / manifest.file).resolve()
        if directory.resolve() not in model_file.parents:
            raise ModelError(f"manifest {mpath} points outside its directory")
        if not model_file.is_file():
            raise ModelError(f"model file {model_file} is missing")
        if verify_sha256 and manifest.sha256:
            digest = file_sha256(model_file)
            if digest != manifest.sha256:
                raise ModelError(f"model file {model_file} is corrupt (sha256 mismatch)")
        try:
            labels = (directory / manifest.labels).read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise ModelError(f"labels file of {directory} is missing: {exc}") from exc
        if len(labels) != manifest.num_classes:
            raise ModelError(
                f"{directory}: {len(labels)} labels for {manifest.num_classes} classes"
            )
        return cls(directory, manifest, labels)


def resolve_model_dir(store_root: Path, key: str) -> Path:
    """The variant directory ``key`` inside a model store; refuses anything outside it."""
    if not key or "/" in key or key.startswith("."):
        raise ModelError(f"bad model key {key!r}")
    path = (Path(store_root) / key).resolve()
    if Path(store_root).resolve() not in path.parents:
        raise ModelError(f"model key {key!r} escapes the model store")
    return path


def model_keys(store_root: Path) -> list[str]:
    """The model keys of a store in our layout: its variant directories with a manifest.json."""
    return sorted(p.parent.name for p in Path(store_root).glob("*/manifest.json"))


def store_root(configured: str = "") -> Path:
    """The model store: ``configured`` (a component's ``modelStorePath``) when set, else
    ``$GGV_MODEL_STORE``; ModelError when neither is."""
    root = configured or os.environ.get(MODEL_STORE_ENV, "")
    if not root:
        raise ModelError(
            f"no model store: set {MODEL_STORE_ENV} (the recipe does, from the model-store "
            "component's artifacts:decompressedPath) or configuration modelStorePath"
        )
    return Path(root)


def file_sha256(path: Path) -> str:
    """The hex SHA-256 of the file at ``path`` (a manifest's ``sha256``), read in 1 MiB chunks."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
