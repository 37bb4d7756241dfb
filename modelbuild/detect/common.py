"""What build.py and verify.py share: photos, fitting, running a variant from its manifest,
decoding its outputs, NMS and the agreement between two lists of detections.

A detection is ``(label_index, score, (xmin, ymin, xmax, ymax))`` with the box normalised to 0..1
of the ORIGINAL photo (fitting undone), as the serving library reports it.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import numpy as np
from PIL import Image

# The evaluation photos (scikit-image's bundled data; no download): the people, and photos
# without one (CenterNet's COCO classes: cat, cup, motorcycle, horse, ...).
PHOTOS = ["astronaut", "camera", "chelsea", "coffee", "motorcycle_left", "horse", "rocket"]
# What each photo shows (for the fitting measurement of the COCO model).
EXPECTED = {
    "astronaut": "person",
    "camera": "person",
    "chelsea": "cat",
    "coffee": "cup",
    "motorcycle_left": "motorcycle",
    "horse": "horse",
}
CALIB_PHOTOS = [
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "motorcycle_left",
    "motorcycle_right",
    "camera",
    "immunohistochemistry",
]

Detection = tuple[int, float, tuple[float, float, float, float]]


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_json_atomic(path: str, obj: object) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


def photo(name: str) -> np.ndarray:
    """An RGB uint8 HxWx3 photo from skimage.data (grey and binary photos as RGB)."""
    import skimage.data as data

    if name in ("motorcycle_left", "motorcycle_right"):
        left, right, _ = data.stereo_motorcycle()
        im = left if name == "motorcycle_left" else right
    else:
        im = getattr(data, name)()
    im = np.asarray(im)
    if im.dtype == bool:
        im = im.astype(np.uint8) * 255
    if im.ndim == 2:
        im = np.stack([im] * 3, axis=-1)
    return np.ascontiguousarray(im[..., :3].astype(np.uint8))


def fit(
    image: np.ndarray, size: int, mode: str, fill: int = 0
) -> tuple[np.ndarray, dict[str, float]]:
    """Fit an RGB photo to size x size (bilinear): ``stretch`` or ``letterbox`` (centred, aspect
    kept, ``fill`` around). Returns the pixels and the transform that undoes it."""
    h, w = image.shape[:2]
    pil = Image.fromarray(image)
    if mode == "stretch":
        return np.asarray(pil.resize((size, size), Image.BILINEAR)), {
            "sx": 1.0,
            "sy": 1.0,
            "ox": 0.0,
            "oy": 0.0,
        }
    scale = min(size / w, size / h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    canvas = Image.new("RGB", (size, size), (fill, fill, fill))
    ox, oy = (size - nw) // 2, (size - nh) // 2
    canvas.paste(pil.resize((nw, nh), Image.BILINEAR), (ox, oy))
    # normalised input coordinate u -> original: (u * size - ox) / nw
    return np.asarray(canvas), {"sx": size / nw, "sy": size / nh, "ox": ox / nw, "oy": oy / nh}


def unfit(box: tuple[float, float, float, float], t: dict[str, float]) -> tuple[float, ...]:
    x1, y1, x2, y2 = box
    out = (
        x1 * t["sx"] - t["ox"],
        y1 * t["sy"] - t["oy"],
        x2 * t["sx"] - t["ox"],
        y2 * t["sy"] - t["oy"],
    )
    return tuple(float(min(1.0, max(0.0, v))) for v in out)


def make_input(pixels: np.ndarray, manifest: dict[str, Any]) -> np.ndarray:
    """The runtime's input tensor from fitted RGB pixels, from the manifest alone."""
    pre, spec = manifest["preprocess"], manifest["input"]
    x = (pixels.astype(np.float32) - np.asarray(pre["mean"], np.float32)) / np.asarray(
        pre["std"], np.float32
    )
    x = x[None]
    q = spec.get("quantization")
    if spec["dtype"] == "float32":
        return x.astype(np.float32)
    lo, hi = (0, 255) if spec["dtype"] == "uint8" else (-128, 127)
    x = np.round(x / q["scale"] + q["zero_point"]) if q else np.round(x)
    return np.clip(x, lo, hi).astype(spec["dtype"])


class Runner:
    """A variant loaded with its own runtime (ai_edge_litert or onnxruntime)."""

    def __init__(self, directory: str, threads: int = 2) -> None:
        with open(os.path.join(directory, "manifest.json"), encoding="utf-8") as f:
            self.manifest = json.load(f)
        path = os.path.join(directory, self.manifest["file"])
        self.format = self.manifest["format"]
        if self.format == "tflite":
            from ai_edge_litert.interpreter import Interpreter

            self.interp = Interpreter(model_path=path, num_threads=threads)
            self.interp.allocate_tensors()
            self.in_index = self.interp.get_input_details()[0]["index"]
            self.out_index = [d["index"] for d in self.interp.get_output_details()]
        else:
            import onnxruntime as ort

            so = ort.SessionOptions()
            so.intra_op_num_threads = threads
            so.inter_op_num_threads = 1
            self.sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
            self.in_name = self.sess.get_inputs()[0].name

    def raw(self, x: np.ndarray) -> list[np.ndarray]:
        if self.format == "tflite":
            self.interp.set_tensor(self.in_index, x)
            self.interp.invoke()
            return [self.interp.get_tensor(i).copy() for i in self.out_index]
        return list(self.sess.run(None, {self.in_name: x}))

    def detect(self, image: np.ndarray, threshold: float = 0.05) -> list[Detection]:
        m = self.manifest
        pixels, t = fit(image, m["preprocess"]["resize"], m["detection"]["resize"])
        return decode(self.raw(make_input(pixels, m)), m, t, threshold)


def decode(
    outs: list[np.ndarray], m: dict[str, Any], t: dict[str, float], threshold: float
) -> list[Detection]:
    """The manifest's output layout -> detections in original-image coordinates, sorted."""
    det = m["detection"]
    idx = det["output_index"]
    size = float(m["preprocess"]["resize"])
    rows: list[tuple[int, float, tuple[float, float, float, float]]] = []
    if det["outputs"] == "boxes_classes_scores_count":
        n = int(np.asarray(outs[idx["count"]]).ravel()[0])
        boxes = np.asarray(outs[idx["boxes"]]).reshape(-1, 4)[:n]
        classes = np.asarray(outs[idx["classes"]]).ravel()[:n]
        scores = np.asarray(outs[idx["scores"]]).ravel()[:n]
        for b, c, s in zip(boxes, classes, scores, strict=True):
            if s >= threshold:
                y1, x1, y2, x2 = (float(min(1.0, max(0.0, v))) for v in b)
                rows.append((round(c) - det["class_offset"], float(s), (x1, y1, x2, y2)))
    elif det["outputs"] == "xyxy_score_class":
        arr = np.asarray(outs[idx["detections"]]).reshape(-1, 6)
        for x1, y1, x2, y2, s, c in arr:
            if s >= threshold:
                box = tuple(float(min(1.0, max(0.0, v / size))) for v in (x1, y1, x2, y2))
                rows.append((round(c) - det["class_offset"], float(s), box))  # type: ignore[arg-type]
    else:
        raise ValueError(f"unknown detection.outputs {det['outputs']}")
    if det.get("nms_iou") is not None:
        rows = nms(rows, float(det["nms_iou"]))
    rows = [(c, s, unfit(b, t)) for c, s, b in rows]  # type: ignore[misc]
    rows.sort(key=lambda r: -r[1])
    return rows[: det.get("max_detections", 100)]


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def nms(rows: list[Detection], thr: float) -> list[Detection]:
    """Per-class greedy NMS (what the serving library runs for models without it)."""
    keep: list[Detection] = []
    for r in sorted(rows, key=lambda r: -r[1]):
        if all(k[0] != r[0] or iou(k[2], r[2]) <= thr for k in keep):
            keep.append(r)
    return keep


def agreement(
    ref: list[Detection], var: list[Detection], threshold: float, tol: float
) -> dict[str, Any]:
    """Same objects above ``threshold`` both ways (the other side's match may be down to
    threshold - tol, so a score at the threshold does not count as a miss), matched boxes' IoU
    and score drift."""

    def match(a: list[Detection], b: list[Detection]) -> tuple[int, list[tuple[float, float]]]:
        missing, pairs = 0, []
        for c, s, box in a:
            if s < threshold:
                continue
            cands = [(iou(box, bb), ss) for cc, ss, bb in b if cc == c and ss >= threshold - tol]
            if not cands:
                missing += 1
                continue
            best = max(cands)
            pairs.append((best[0], abs(best[1] - s)))
        return missing, pairs

    missing, pairs = match(ref, var)
    extra, _ = match(var, ref)
    return {
        "ref_objects": sum(1 for d in ref if d[1] >= threshold),
        "matched": len(pairs),
        "missing": missing,
        "extra": extra,
        "min_iou": round(min((p[0] for p in pairs), default=1.0), 4),
        "max_score_drift": round(max((p[1] for p in pairs), default=0.0), 4),
    }
