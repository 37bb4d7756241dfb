"""Study (not part of the build, so outside modelbuild/*.py, whose changes rebuild the model
store): a full-int8 TFLite of the store's ONNX export through onnx2tf, against the store's
tflite-int8 (litert-torch + modelbuild/tflite_graph.py's clean-up). The figures it printed are in
modelbuild/README.md ("onnx2tf full-int8").

    # 1. calibration data, the build's own (72 seeded crops, seed 0), NHWC float in [0, 1]
    build/venvs/models/bin/python modelbuild/study/onnx2tf_int8.py calib build/wt-auto/onnx2tf
    # 2. the conversion, in its own venv (onnx2tf==2.6.9 needs Python >= 3.12). onnx2tf
    #    OVERWRITES its input with the onnxsim-simplified graph: convert a copy, never the store's
    cd build/wt-auto/onnx2tf && cp ../../model-store/onnx-fp32/model.onnx lite0.onnx
    PATH=$VENV/bin:$PATH onnx2tf -i lite0.onnx -o out_tf -tb tf_converter -oiqt -qt per-channel \
        -cind input calib_nhwc_01.npy "[[[[0.498,0.498,0.498]]]]" "[[[[0.502,0.502,0.502]]]]"
    # 3. agreement with the float reference and speed at 1 and 2 threads (runtime venv)
    python modelbuild/study/onnx2tf_int8.py compare build/model-store \
        build/wt-auto/onnx2tf/out_tf/model_full_integer_quant.tflite

The float reference is the store's onnx-fp32 on onnxruntime (79/79 top-1 with the float PyTorch
model, modelbuild/verify.py); the images are the 7 reference photos and verify.py's 72 held-out
crops (seed 1). The timing alternates one call of each model, in rounds, in one process.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parents[1]  # modelbuild/: effnet_lite
sys.path.insert(0, str(HERE))

import effnet_lite as E  # noqa: E402

CALIB_COUNT, CALIB_SEED, HELDOUT_SEED = 72, 0, 1


def calib(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    pixels = E.random_crops(CALIB_COUNT, CALIB_SEED)
    np.save(out / "calib_nhwc_01.npy", pixels.astype(np.float32) / 255.0)
    # onnx2tf downloads this file for its self-check unless it is in the working directory
    sample = E.random_crops(20, CALIB_SEED, size=128).astype(np.float32) / 255.0
    np.save(out / "calibration_image_sample_data_20x128x128x3_float32.npy", sample)
    print(f"wrote {out}/calib_nhwc_01.npy {pixels.shape}")


def _images(store: Path) -> list[np.ndarray]:
    """224x224 RGB uint8: the reference photos (the store's preprocessing), then the crops."""
    from ggvision.serving.models.auto import reference_photos
    from ggvision.serving.models.store import Model
    from ggvision.serving.preprocess import crop_resize

    spec = Model.load(store / "tflite-int8").manifest.preprocess
    photos = [crop_resize(p, spec) for _, p, _ in reference_photos(store)]
    return photos + list(E.random_crops(72, HELDOUT_SEED))


class Tflite:
    def __init__(self, path: str, threads: int) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.interp = Interpreter(model_path=path, num_threads=threads)
        self.interp.allocate_tensors()
        self.inp = self.interp.get_input_details()[0]
        self.out = self.interp.get_output_details()[0]

    def encode(self, pixels: np.ndarray) -> np.ndarray:
        real = (pixels.astype(np.float32) - 127.0) / 128.0
        scale, zp = self.inp["quantization"]
        if self.inp["dtype"] == np.float32:
            return real[None]
        q = np.round(real / scale + zp)
        info = np.iinfo(self.inp["dtype"])
        return np.clip(q, info.min, info.max).astype(self.inp["dtype"])[None]

    def run(self, x: np.ndarray) -> np.ndarray:
        self.interp.set_tensor(self.inp["index"], x)
        self.interp.invoke()
        y = self.interp.get_tensor(self.out["index"]).astype(np.float32)
        scale, zp = self.out["quantization"]
        return (y - zp) * scale if scale else y


def compare(store: Path, candidate: str, rounds: int, runs: int) -> dict[str, object]:
    import onnxruntime as ort

    images = _images(store)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    ref_sess = ort.InferenceSession(str(store / "onnx-fp32" / "model.onnx"), so)
    name = ref_sess.get_inputs()[0].name
    ref = [int(np.argmax(ref_sess.run(None, {name: E.to_nchw(p[None])})[0])) for p in images]
    models = {
        "tflite-int8 (store)": str(store / "tflite-int8" / "model.tflite"),
        "onnx2tf": candidate,
    }
    result: dict[str, object] = {"images": len(images)}
    for label, path in models.items():
        m = Tflite(path, 1)
        top1 = [int(np.argmax(m.run(m.encode(p)))) for p in images]
        result[label] = {
            "photos_top1": f"{sum(a == b for a, b in zip(top1[:7], ref[:7], strict=True))}/7",
            "all_top1": f"{sum(a == b for a, b in zip(top1, ref, strict=True))}/{len(images)}",
            "input": str(np.dtype(m.inp["dtype"])),
            "size_bytes": os.path.getsize(path),
        }
    for threads in (1, 2):
        loaded = {label: Tflite(path, threads) for label, path in models.items()}
        x = {label: m.encode(images[0]) for label, m in loaded.items()}
        medians: dict[str, list[float]] = {label: [] for label in loaded}
        for m_label, m in loaded.items():
            for _ in range(15):
                m.run(x[m_label])
        for _ in range(rounds):
            # one call of each model in turn: both see the same load on a shared machine
            times: dict[str, list[float]] = {label: [] for label in loaded}
            for _ in range(runs):
                for label, m in loaded.items():
                    t0 = time.perf_counter()
                    m.run(x[label])
                    times[label].append(time.perf_counter() - t0)
            for label, t in times.items():
                medians[label].append(statistics.median(t) * 1000)
        for label, ms in medians.items():
            entry = result[label]
            assert isinstance(entry, dict)
            entry[f"ms_{threads}t"] = round(statistics.median(ms), 3)
            # the least-disturbed round: on a shared machine the better figure to compare
            entry[f"best_ms_{threads}t"] = round(min(ms), 3)
            entry[f"rounds_{threads}t"] = [round(v, 3) for v in ms]
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("calib")
    c.add_argument("out", type=Path)
    m = sub.add_parser("compare")
    m.add_argument("store", type=Path)
    m.add_argument("candidate")
    m.add_argument("--rounds", type=int, default=5)
    m.add_argument("--runs", type=int, default=200)
    args = ap.parse_args(argv)
    if args.cmd == "calib":
        calib(args.out)
    else:
        print(json.dumps(compare(args.store, args.candidate, args.rounds, args.runs), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
