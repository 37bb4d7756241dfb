"""Verify every built variant against the float PyTorch reference, with its own runtime.

    python modelbuild/verify.py [--out build/model-store] [--heldout 72] [--bench 20]

For each ``<out>/<variant>/manifest.json``: check the model file's sha256, load the model with its
runtime (ai_edge_litert for TFLite, onnxruntime for ONNX, torch.jit for TorchScript with the
manifest's quantized engine), preprocess the 7 scikit-image sample photos *as the manifest says*
(crop fraction, resize, mean/std, layout, input quantization) and compare with the float PyTorch
model (``effnet_lite``):

* every variant: same top-1 on all 7 photos;
* fp32 variants: top-5 identical, max |logit diff| < 1e-2;
* int8 variants: mean top-5 overlap >= 0.8 over the photos (ties at the 5th value count as in).

Also reports (not gating) top-1 agreement on held-out random crops (seed 1; calibration used seed 0)
and a median latency.  Writes ``<out>/reference.json`` with the float reference top-5 per photo.
Exit status 1 on any failure.
"""

import argparse
import gc
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import effnet_lite as E  # noqa: E402
import numpy as np  # noqa: E402

INT8_MIN_MEAN_OVERLAP = 0.8
FP32_MAX_LOGIT_DIFF = 1e-2

PHOTO_SOURCES = {
    "chelsea": "skimage.data.chelsea()",
    "coffee": "skimage.data.coffee()",
    "astronaut": "skimage.data.astronaut()",
    "rocket": "skimage.data.rocket()",
    "stereo_motorcycle": "skimage.data.stereo_motorcycle()[0]",
    "camera": "skimage.data.camera(), grey replicated to RGB",
    "clock": "skimage.data.clock(), grey replicated to RGB",
}


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max()
    e = np.exp(z)
    return e / e.sum()


# --------------------------------------------------------------------------- runtime side


def manifest_input(pixels: np.ndarray, m: dict) -> np.ndarray:
    """uint8 HxWx3 (already cropped/resized) -> the model's input tensor, from the manifest only."""
    pre = m["preprocess"]
    x = (pixels.astype(np.float32) - np.float32(pre["mean"])) / np.float32(pre["std"])
    x = x[None]
    if m["input"]["layout"] == "NCHW":
        x = x.transpose(0, 3, 1, 2)
    q = m["input"]["quantization"]
    dtype = np.dtype(m["input"]["dtype"])
    if q is not None:
        info = np.iinfo(dtype)
        x = np.clip(np.round(x / q["scale"]) + q["zero_point"], info.min, info.max)
    return np.ascontiguousarray(x.astype(dtype))


def manifest_output(y: np.ndarray, m: dict) -> np.ndarray:
    q = m["output"]["quantization"]
    y = np.asarray(y).reshape(-1)
    if q is not None:
        y = (y.astype(np.float32) - q["zero_point"]) * np.float32(q["scale"])
    return y.astype(np.float32)


def head_logits(vdir: str, m: dict) -> Callable[[np.ndarray], np.ndarray]:
    """Raw output -> logits: as they are, or for an embedding variant (task ``embedding``) its
    ImageNet head (``embedding.head``: weight | bias) applied to the dequantized embedding."""
    if m.get("task") != "embedding":
        return lambda y: manifest_output(y, m)
    head = np.load(os.path.join(vdir, m["embedding"]["head"]))
    return lambda y: head[:, :-1] @ manifest_output(y, m) + head[:, -1]


def load_runner(vdir: str, m: dict) -> Callable[[np.ndarray], np.ndarray]:
    """Return f(input tensor) -> raw output array for the variant."""
    path = os.path.join(vdir, m["file"])
    fmt = m["format"]
    if fmt == "tflite":
        from ai_edge_litert.interpreter import Interpreter

        interp = Interpreter(model_path=path, num_threads=os.cpu_count() or 1)
        interp.allocate_tensors()
        inp = interp.get_input_details()[0]
        out = interp.get_output_details()[0]

        def run(x):
            interp.set_tensor(inp["index"], x)
            interp.invoke()
            return interp.get_tensor(out["index"]).copy()

        return run
    if fmt == "onnx":
        import onnxruntime as ort

        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name
        return lambda x: sess.run(None, {name: x})[0]
    if fmt == "torchscript":
        import torch

        if m.get("torch_engine"):
            torch.backends.quantized.engine = m["torch_engine"]
        module = torch.jit.load(path)
        module.eval()

        def run(x):
            with torch.no_grad():
                return module(torch.from_numpy(x)).numpy()

        return run
    raise ValueError(f"unknown format {fmt}")


# --------------------------------------------------------------------------- reference side


def float_reference(images: list[tuple[str, np.ndarray]]) -> dict[str, np.ndarray]:
    import torch

    model = E.load_model()
    out = {}
    with torch.no_grad():
        for name, pixels in images:
            x = torch.from_numpy(E.to_nchw(pixels[None]))
            out[name] = model(x)[0].numpy()
    return out


def top5(logits: np.ndarray) -> list[int]:
    return [int(i) for i in np.argsort(-logits, kind="stable")[:5]]


def overlap5(ref_logits: np.ndarray, y: np.ndarray) -> float:
    """|float top-5 ∩ variant top-5| / 5, where the variant's top-5 includes classes tied with its
    5th value (int8 outputs take few distinct values, so exact ties are common)."""
    fifth = np.sort(y)[::-1][4]
    return sum(1 for i in top5(ref_logits) if y[i] >= fifth) / 5


def same_top1(ref_logits: np.ndarray, y: np.ndarray) -> bool:
    """The float top-1 class is (one of) the variant's highest."""
    return bool(y[int(np.argmax(ref_logits))] >= y.max())


def write_reference(out_dir: str, photos, ref: dict[str, np.ndarray], labels: list[str]) -> str:
    doc = {
        "schema": 1,
        "model": "efficientnet-lite0 float PyTorch (modelbuild/effnet_lite.py)",
        "source": {"package": E.WEIGHTS_PACKAGE, "file": E.WEIGHTS_FILE},
        "preprocess": "RGB, centre crop int(0.875*min(h,w)) at ((h-c+1)//2, (w-c+1)//2), "
        "PIL bicubic resize to 224, (p-127)/128",
        "photos": {},
    }
    for name, _ in photos:
        p = softmax(ref[name])
        doc["photos"][name] = {
            "image": PHOTO_SOURCES[name],
            "top5": [
                {"label": labels[i], "index": i, "prob": round(float(p[i]), 6)}
                for i in top5(ref[name])
            ],
        }
    path = os.path.join(out_dir, "reference.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")
    return path


# --------------------------------------------------------------------------- main


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="verify the built model-store variants")
    ap.add_argument("--out", default="build/model-store")
    ap.add_argument(
        "--heldout", type=int, default=72, help="held-out random crops to report on (0: none)"
    )
    ap.add_argument(
        "--bench", type=int, default=20, help="timed runs for the latency column (0: none)"
    )
    args = ap.parse_args(argv)
    out_dir = os.path.abspath(args.out)
    index_path = os.path.join(out_dir, "index.json")
    if not os.path.isfile(index_path):
        print(f"verify: {index_path} missing; run build.py first")
        return 1
    with open(index_path, encoding="utf-8") as f:
        index = json.load(f)

    labels = E.labels()
    photos = [(n, E.crop_resize(img)) for n, img in E.eval_images()]
    ref = float_reference(photos)
    ref_path = write_reference(out_dir, photos, ref, labels)
    held = (
        E.random_crops(args.heldout, seed=1)
        if args.heldout
        else np.zeros((0, 224, 224, 3), np.uint8)
    )
    held_ref = float_reference([(str(i), h) for i, h in enumerate(held)])

    rows = []
    failures = []
    for entry in index["variants"]:
        name = entry["variant"]
        vdir = os.path.join(out_dir, entry["dir"])
        with open(os.path.join(vdir, "manifest.json"), encoding="utf-8") as f:
            m = json.load(f)
        errs = []
        if sha256_file(os.path.join(vdir, m["file"])) != m["sha256"]:
            errs.append("sha256 mismatch")
        with open(os.path.join(vdir, m["labels"]), encoding="utf-8") as f:
            vlabels = f.read().splitlines()
        if vlabels != labels:
            errs.append("labels.txt differs")
        raw_run = load_runner(vdir, m)
        logits = head_logits(vdir, m)

        def run(x, raw_run=raw_run, logits=logits):
            return logits(raw_run(x))

        top1_ok, overlaps, max_diff, details = 0, [], 0.0, []
        for pname, pixels in photos:
            y = run(manifest_input(pixels, m))
            r = ref[pname]
            ok = same_top1(r, y)
            top1_ok += ok
            overlaps.append(overlap5(r, y))
            max_diff = max(max_diff, float(np.abs(y - r).max()))
            if not ok:
                details.append(
                    f"{pname}: {labels[int(np.argmax(y))]} != {labels[int(np.argmax(r))]}"
                )
        held_ok = 0
        for i, pixels in enumerate(held):
            y = run(manifest_input(pixels, m))
            held_ok += same_top1(held_ref[str(i)], y)
        ms = float("nan")
        if args.bench:
            x = manifest_input(photos[0][1], m)
            for _ in range(3):
                run(x)
            ts = []
            for _ in range(args.bench):
                t = time.perf_counter()
                run(x)
                ts.append(time.perf_counter() - t)
            ms = float(np.median(ts) * 1e3)
        del run, raw_run
        gc.collect()  # drop the session/interpreter: idle runtime threads skew the next timing
        mean_overlap = float(np.mean(overlaps))
        if top1_ok != len(photos):
            errs.append("top-1 differs: " + "; ".join(details))
        if m["precision"] == "fp32":
            if min(overlaps) < 1.0:
                errs.append(f"fp32 top-5 differs (min overlap {min(overlaps):.2f})")
            if max_diff > FP32_MAX_LOGIT_DIFF:
                errs.append(f"fp32 max logit diff {max_diff:.3g} > {FP32_MAX_LOGIT_DIFF}")
        elif mean_overlap < INT8_MIN_MEAN_OVERLAP:
            errs.append(f"int8 mean top-5 overlap {mean_overlap:.2f} < {INT8_MIN_MEAN_OVERLAP}")
        rows.append(
            (
                name,
                top1_ok,
                len(photos),
                mean_overlap,
                min(overlaps),
                max_diff,
                held_ok,
                len(held),
                ms,
                errs,
            )
        )
        if errs:
            failures.append((name, errs))

    hdr = (
        f"{'variant':<26} {'top-1 photos':>12} {'top-5 mean':>10} {'top-5 min':>9} "
        f"{'max|dlogit|':>11} {'held-out top-1':>14} {'ms':>7}  result"
    )
    print(hdr)
    print("-" * len(hdr))
    for name, ok, n, mo, mn, md, hok, hn, ms, errs in rows:
        held_s = f"{hok}/{hn}" if hn else "-"
        print(
            f"{name:<26} {f'{ok}/{n}':>12} {mo:>10.2f} {mn:>9.2f} {md:>11.2g} "
            f"{held_s:>14} {ms:>7.2f}  " + ("FAIL: " + "; ".join(errs) if errs else "ok")
        )
    print(f"reference: {ref_path}")
    if failures:
        print(f"verify: {len(failures)} variant(s) FAILED")
        return 1
    if not rows:
        print("verify: no variants in index.json")
        return 1
    print(f"verify: all {len(rows)} variants ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
