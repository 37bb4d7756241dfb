"""Detection: boxes, labels and scores, in the one place where a detector's output is decoded.

The manifest's ``detection`` block (``docs/messages.md``; the model store's contract) says how:

* preprocessing: the image after its EXIF rotation, RGB, fitted to ``resize`` x ``resize`` by
  ``detection.resize``: ``stretch`` (the whole image, aspect ratio not kept) or ``letterbox``
  (aspect kept, centred, ``letterbox_fill`` around); then ``(x - mean) / std`` and the input's
  dtype: float32 as it is, int8/uint8 with quantization quantized, uint8 without quantization
  the value rounded and clipped to 0..255 (a graph that takes raw pixels);
* ``detection.outputs``: ``boxes_classes_scores_count`` (boxes [1,N,4], classes [1,N], scores
  [1,N], count [1]; only the first ``count`` rows are valid) or ``xyxy_score_class`` (one
  [1,N,6] output: x1, y1, x2, y2, score, class), at the runtime's output indexes
  ``detection.output_index``;
* ``detection.box_format``: ``yxyx_normalized`` (0..1 of the input) or ``xyxy_input_pixels``;
* ``detection.class_offset``: label index = the model's class value - class_offset;
* ``detection.nms_iou``: null when the graph ran NMS, else per-class NMS here with that IoU.

Answers: boxes in 0..1 of the original image (letterbox scale and padding undone, clipped),
at least ``threshold`` in score, of the labels in the ``labels`` option when it is not empty,
best first, at most ``top_k`` (and the manifest's ``max_detections``).
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from PIL import Image, ImageOps
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ggvision.contract import Box, Detection
from ggvision.serving.models.store import Model, ModelError
from ggvision.serving.preprocess import (
    ImageLike,
    PlaneEncoder,
    PlaneTensor,
    encode,
    encode_plane,
    letterbox_box,
    letterboxed,
    plane_spec,
    resized,
    rgb_image,
)
from ggvision.serving.tasks.base import Task, TaskOutput

Layout = Literal["boxes_classes_scores_count", "xyxy_score_class"]
_ROLES: dict[str, tuple[str, ...]] = {
    "boxes_classes_scores_count": ("boxes", "classes", "scores", "count"),
    "xyxy_score_class": ("detections",),
}


class DetectionSpec(BaseModel):
    """The manifest's ``detection`` block."""

    model_config = ConfigDict(extra="allow")
    outputs: Layout
    output_index: dict[str, int] = Field(default_factory=dict)
    box_format: Literal["yxyx_normalized", "xyxy_input_pixels"] = "yxyx_normalized"
    class_offset: int = 0
    nms_iou: float | None = Field(None, gt=0.0, le=1.0)
    resize: Literal["stretch", "letterbox"] = "stretch"
    letterbox_fill: int = Field(0, ge=0, le=255)
    max_detections: int = Field(100, ge=1)

    def index(self, role: str) -> int:
        """The runtime's output index of ``role`` (default: the roles in the layout's order)."""
        return self.output_index.get(role, _ROLES[self.outputs].index(role))


@dataclass(frozen=True, slots=True)
class Geometry:
    """How one image was fitted to the model's square input of ``side`` pixels: the original
    size (after EXIF rotation) and where the resized image lies in the input."""

    width: int
    height: int
    side: int
    scale_x: float  # resized width / original width
    scale_y: float
    pad_x: int  # left padding, input pixels
    pad_y: int
    inner_w: int  # the resized image's size in the input, pixels
    inner_h: int

    @classmethod
    def stretch(cls, width: int, height: int, side: int) -> Geometry:
        return cls(width, height, side, side / width, side / height, 0, 0, side, side)

    @classmethod
    def letterbox(cls, width: int, height: int, side: int) -> Geometry:
        w, h, pad_x, pad_y = letterbox_box(width, height, side)
        return cls(width, height, side, w / width, h / height, pad_x, pad_y, w, h)

    def to_original(self, boxes: np.ndarray) -> np.ndarray:
        """(n, 4) xyxy boxes in 0..1 of the input -> 0..1 of the original image, clipped."""
        px = boxes * np.float32(self.side)
        out = np.empty_like(px)
        out[:, 0::2] = (px[:, 0::2] - self.pad_x) / self.inner_w
        out[:, 1::2] = (px[:, 1::2] - self.pad_y) / self.inner_h
        clipped: np.ndarray = np.clip(out, 0.0, 1.0)
        return clipped


def spec_of(model: Model) -> DetectionSpec:
    """The model's detection spec (parsed once per model); ModelError when it is missing or bad."""
    cached = _specs.get(model)
    if cached is not None:
        return cached
    raw = (model.manifest.model_extra or {}).get("detection")
    if not isinstance(raw, dict):
        raise ModelError(f"model {model.directory.name}: a detector's manifest needs 'detection'")
    try:
        spec = DetectionSpec.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise ModelError(
            f"model {model.directory.name}: invalid manifest detection.{where}: {first.get('msg')}"
        ) from exc
    _specs[model] = spec
    return spec


_specs: weakref.WeakKeyDictionary[Model, DetectionSpec] = weakref.WeakKeyDictionary()


def upright(image: ImageLike) -> ImageLike:
    """A PIL image turned as its EXIF orientation says (arrays, frames, have no EXIF)."""
    if isinstance(image, Image.Image):
        orientation = image.getexif().get(0x0112, 1)
        if orientation not in (None, 1):
            return ImageOps.exif_transpose(image)
    return image


def fit(image: ImageLike, model: Model) -> tuple[np.ndarray, Geometry]:
    """The image (EXIF-rotated) fitted to the model's input -> (input tensor, geometry)."""
    spec, pre = spec_of(model), model.manifest.preprocess
    img = rgb_image(upright(image))
    w, h = img.size
    if w < 1 or h < 1:
        raise ValueError(f"image of {w}x{h} pixels cannot be detected in")
    side = pre.resize
    if spec.resize == "stretch":
        geometry = Geometry.stretch(w, h, side)
        pixels = np.asarray(resized(img, (side, side), pre), dtype=np.uint8)
    else:
        geometry = Geometry.letterbox(w, h, side)
        pixels = letterboxed(img, side, pre, spec.letterbox_fill)
    return encode(pixels, model.manifest, raw_uint8=True), geometry


def decode(
    outputs: Sequence[np.ndarray], spec: DetectionSpec, side: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The model's outputs -> (boxes (n, 4) xyxy in 0..1 of the input, class values (n,),
    scores (n,)), unfiltered. ModelError when the outputs do not have the layout's shapes."""
    try:
        if spec.outputs == "xyxy_score_class":
            rows = np.asarray(outputs[spec.index("detections")], dtype=np.float32)
            rows = rows.reshape(-1, rows.shape[-1])
            if rows.shape[-1] != 6:
                raise ModelError(f"xyxy_score_class needs rows of 6 values, not {rows.shape}")
            raw, scores, classes = rows[:, :4], rows[:, 4], rows[:, 5]
        else:
            raw = np.asarray(outputs[spec.index("boxes")], dtype=np.float32).reshape(-1, 4)
            classes = np.asarray(outputs[spec.index("classes")], dtype=np.float32).reshape(-1)
            scores = np.asarray(outputs[spec.index("scores")], dtype=np.float32).reshape(-1)
            count = np.asarray(outputs[spec.index("count")], dtype=np.float32).reshape(-1)
            if count.size != 1 or not (len(raw) == len(classes) == len(scores)):
                raise ModelError(
                    f"boxes_classes_scores_count outputs of {len(raw)} boxes, {len(classes)} "
                    f"classes, {len(scores)} scores and {count.size} counts do not fit together"
                )
            # Rows past the count are uninitialised memory in TFLite: never read.
            n = int(np.clip(np.nan_to_num(count[0]), 0, len(raw)))
            raw, classes, scores = raw[:n], classes[:n], scores[:n]
    except IndexError as exc:
        raise ModelError(
            f"the model has {len(outputs)} outputs; detection.output_index wants more"
        ) from exc
    yxyx = spec.box_format == "yxyx_normalized"
    boxes = raw[:, [1, 0, 3, 2]] if yxyx else raw / np.float32(side)
    return np.clip(boxes, 0.0, 1.0), classes, scores


def nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou: float) -> np.ndarray:
    """Per-class greedy non-maximum suppression: the indexes kept, best score first. A box is
    dropped when it overlaps a better box of the same class by more than ``iou``."""
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    for cls in np.unique(classes):
        idx = order[classes[order] == cls]
        while idx.size:
            best, rest = idx[0], idx[1:]
            keep.append(int(best))
            if not rest.size:
                break
            overlap = iou_matrix(boxes[best][None], boxes[rest])[0]
            idx = rest[overlap <= iou]
    kept = np.asarray(keep, dtype=np.int64)
    return kept[np.argsort(-scores[kept], kind="stable")]


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every xyxy box of ``a`` (n, 4) with every one of ``b`` (m, 4) -> (n, m)."""
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    out: np.ndarray = np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)
    return out


def detections(
    outputs: Sequence[np.ndarray],
    model: Model,
    geometry: Geometry | None,
    *,
    top_k: int,
    threshold: float,
    labels: Sequence[str] = (),
) -> list[Detection]:
    """The answer of one inference: see the module's docstring. ``geometry`` None: the input
    was the whole image stretched."""
    spec, side = spec_of(model), model.manifest.preprocess.resize
    boxes, classes, scores = decode(outputs, spec, side)
    names = model.labels
    index = np.rint(classes).astype(np.int64) - spec.class_offset
    ok = np.isfinite(scores) & (scores >= threshold) & (index >= 0) & (index < len(names))
    ok &= np.isfinite(boxes).all(axis=1)
    if labels:
        wanted = np.asarray([name in set(labels) for name in names], dtype=bool)
        ok &= wanted[np.clip(index, 0, len(names) - 1)]
    boxes, index, scores = boxes[ok], index[ok], scores[ok]
    if geometry is not None:
        boxes = geometry.to_original(boxes)
    # Nothing left of a box that lay on the padding only.
    ok = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    boxes, index, scores = boxes[ok], index[ok], scores[ok]
    if spec.nms_iou is not None and len(scores):
        order = nms(boxes, scores, index, spec.nms_iou)
    else:
        order = np.argsort(-scores, kind="stable")
    order = order[: max(0, min(top_k, spec.max_detections))]
    return [
        Detection(
            label=names[int(index[i])],
            index=int(index[i]),
            score=round(float(scores[i]), 6),
            box=Box(
                xmin=round(float(boxes[i, 0]), 6),
                ymin=round(float(boxes[i, 1]), 6),
                xmax=round(float(boxes[i, 2]), 6),
                ymax=round(float(boxes[i, 3]), 6),
            ),
        )
        for i in order
    ]


class DetectionTask(Task):
    name = "detection"
    all_outputs = True

    def prepare(self, image: ImageLike, model: Model) -> tuple[np.ndarray, Any]:
        if isinstance(image, PlaneTensor):  # made by _plane_encoder's encode: geometry only
            w, h = image.source_size
            side = model.manifest.preprocess.resize
            stretch = spec_of(model).resize == "stretch"
            geometry = (Geometry.stretch if stretch else Geometry.letterbox)(w, h, side)
            return image.tensor, geometry
        return fit(image, model)

    def _plane_encoder(self, model: Model) -> PlaneEncoder | None:
        spec, manifest = spec_of(model), model.manifest
        return PlaneEncoder(
            plane_spec(manifest.preprocess, fit=spec.resize, fill=spec.letterbox_fill),
            functools.partial(encode_plane, manifest=manifest, raw_uint8=True),
        )

    def preprocess(self, image: ImageLike, model: Model) -> np.ndarray:
        return fit(image, model)[0]

    def check(self, model: Model, output: Any) -> None:
        spec = spec_of(model)
        wanted = max(spec.index(role) for role in _ROLES[spec.outputs]) + 1
        if not isinstance(output, list) or len(output) < wanted:
            have = len(output) if isinstance(output, list) else 1
            raise ModelError(
                f"model {model.directory.name} has {have} outputs; its detection layout "
                f"{spec.outputs} needs {wanted}"
            )
        decode(output, spec, model.manifest.preprocess.resize)

    def answer(
        self,
        output: Any,
        model: Model,
        *,
        top_k: int,
        threshold: float,
        context: Any = None,
        options: Mapping[str, Any] | None = None,
    ) -> TaskOutput:
        labels = (options or {}).get("labels") or ()
        geometry = context if isinstance(context, Geometry) else None
        return TaskOutput(
            detections=detections(
                output, model, geometry, top_k=top_k, threshold=threshold, labels=labels
            )
        )

    def postprocess(self, output: Any, model: Model, *, top_k: int, threshold: float) -> TaskOutput:
        return self.answer(output, model, top_k=top_k, threshold=threshold)
