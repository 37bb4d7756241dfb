"""Verify the detection store: every variant with its own runtime against the TF reference.

* Agreement (``agreement.json``): on the scikit-image photos each variant (ai_edge_litert or
  onnxruntime, input built from its manifest alone, outputs decoded by its manifest) is compared
  with the TensorFlow reference fed the same fitted pixels (SSD: the original frozen graph in a
  TF session; CenterNet: the GraphDef converted from TFJS, with the same NMS): the same objects
  above 0.5 both ways (the other side may be down to 0.5 - tol), IoU >= 0.9 for matched boxes,
  and the score drift. The variants of one model are also compared pairwise with its fp32 TFLite.
* Speed (``speed.json``): TFLite/XNNPACK and ONNX Runtime at 1 and 2 threads, median of N runs
  after warm-up (the variants of a model interleaved round by round), and the TF reference at 2
  threads.
* ``index.json``'s ``default``: the fastest person variant (2 threads) whose agreement holds.
* Candidates (build.py's CANDIDATES) stay in the store only when their agreement holds; TRIED
  variants are measured and then removed (agreement.json records each decision and why).

    python modelbuild/detect/verify.py --out build/detect-store --human DIR [--runs N]

Exit 1 when a (non-candidate) variant's agreement does not hold.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import build as B  # noqa: E402
import common as C  # noqa: E402
import numpy as np  # noqa: E402

THRESHOLD = 0.5
MIN_IOU = 0.9
TOL = {"fp32": 0.02}  # the other side's score may be down to THRESHOLD - tol
TOL_REDUCED = 0.1  # int8, fp16
CANDIDATE_BASE = "centernet-coco-tflite-fp32"


def reference_detections(model: str, human: str, manifests: dict[str, dict[str, Any]]):  # type: ignore[no-untyped-def]
    """photo -> reference detections for one model family, and a timing function."""
    if model == "ssdlite":
        import ssd_graph as S

        gd = S.load_graph_def(B.person_graph_path())
        ref = S.Reference(gd)
        size = S.inspect(gd).input_size[0]
        m = {
            "detection": {
                "outputs": "boxes_classes_scores_count",
                "output_index": {"boxes": 0, "classes": 1, "scores": 2, "count": 3},
                "class_offset": 1,
                "nms_iou": None,
                "max_detections": 100,
            },
            "preprocess": {"resize": size},
        }

        def run(px: np.ndarray) -> list[np.ndarray]:
            out = ref(px)
            return [out[k] for k in S.OUTPUTS]

        mode = "stretch"
    else:
        import centernet as CN

        ref = CN.Reference(CN.graph_def(os.path.join(human, "models", "centernet.json")))
        size = 512
        any_m = next(iter(manifests.values()))
        mode = any_m["detection"]["resize"]
        m = {"detection": dict(any_m["detection"]), "preprocess": {"resize": size}}

        def run(px: np.ndarray) -> list[np.ndarray]:
            return [ref(px[None].astype(np.float32))]

    dets = {}
    for name in C.PHOTOS:
        px, t = C.fit(C.photo(name), size, mode)
        dets[name] = C.decode(run(px), m, t, 0.05)
    px, _ = C.fit(C.photo("astronaut"), size, mode)

    def timing(runs: int, warmup: int) -> float:
        for _ in range(warmup):
            run(px)
        ts = []
        for _ in range(runs):
            t0 = time.perf_counter()
            run(px)
            ts.append((time.perf_counter() - t0) * 1000)
        return float(np.median(ts))

    return dets, timing


def interleaved_ms(
    out: str,
    keys: list[str],
    manifests: dict[str, dict[str, Any]],
    threads: int,
    runs: int,
    warmup: int,
) -> dict[str, float]:
    """Median latency of each variant, the variants run in turn in each round (so a burst of
    other work on the machine hits them alike): the astronaut photo, the invoke only."""
    runners, inputs = {}, {}
    for key in keys:
        m = manifests[key]
        runners[key] = C.Runner(os.path.join(out, key), threads)
        px, _ = C.fit(C.photo("astronaut"), m["preprocess"]["resize"], m["detection"]["resize"])
        inputs[key] = C.make_input(px, m)
        for _ in range(warmup):
            runners[key].raw(inputs[key])
    times: dict[str, list[float]] = {k: [] for k in keys}
    for _ in range(runs):
        for key in keys:
            t0 = time.perf_counter()
            runners[key].raw(inputs[key])
            times[key].append((time.perf_counter() - t0) * 1000)
    return {k: round(float(np.median(v)), 2) for k, v in times.items()}


def fmt_dets(dets: list[C.Detection], labels: list[str]) -> list[dict[str, Any]]:
    return [
        {
            "label": labels[c] if 0 <= c < len(labels) else str(c),
            "score": round(s, 4),
            "box": [round(v, 4) for v in b],
        }
        for c, s, b in dets
        if s >= THRESHOLD
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", required=True)
    p.add_argument("--human", required=True)
    p.add_argument("--runs", type=int, default=int(os.environ.get("DETECT_VERIFY_RUNS", "30")))
    p.add_argument("--warmup", type=int, default=5)
    args = p.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
    out = os.path.abspath(args.out)
    index_path = os.path.join(out, "index.json")
    with open(index_path, encoding="utf-8") as f:
        index = json.load(f)
    manifests: dict[str, dict[str, Any]] = {}
    for v in index["variants"]:
        with open(os.path.join(out, v["manifest"]), encoding="utf-8") as f:
            manifests[v["variant"]] = json.load(f)
    for key, m in manifests.items():
        if m["sha256"] != C.sha256_file(os.path.join(out, key, m["file"])):
            print(f"[verify] {key}: sha256 mismatch", file=sys.stderr)
            return 1

    families = {
        "ssdlite": [k for k in manifests if k.startswith("ssdlite-")],
        "centernet": [k for k in manifests if k.startswith("centernet-")],
    }
    agreement: dict[str, Any] = {
        "threshold": THRESHOLD,
        "min_iou": MIN_IOU,
        "tolerance": {"fp32": TOL["fp32"], "reduced": TOL_REDUCED},
        "photos": C.PHOTOS,
        "variants": {},
        "reference": {},
    }
    speed: dict[str, Any] = {
        "runs": args.runs,
        "warmup": args.warmup,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "python": platform.python_version(),
        "ms": {},
    }
    failed: list[str] = []
    for fam, keys in families.items():
        if not keys:
            continue
        with open(os.path.join(out, keys[0], "labels.txt"), encoding="utf-8") as f:
            labels = f.read().splitlines()
        ref, ref_timing = reference_detections(fam, args.human, {k: manifests[k] for k in keys})
        agreement["reference"][fam] = {n: fmt_dets(d, labels) for n, d in ref.items()}
        speed["ms"][f"{fam}-tf-reference"] = {
            "runtime": "tensorflow",
            "threads_2": round(ref_timing(max(5, args.runs // 3), 2), 2),
        }
        runs: dict[str, dict[str, list[C.Detection]]] = {}
        for key in keys:
            m = manifests[key]
            r = C.Runner(os.path.join(out, key), threads=2)
            runs[key] = {n: r.detect(C.photo(n), 0.05) for n in C.PHOTOS}
            tol = TOL.get(m["precision"], TOL_REDUCED)
            per = {n: C.agreement(ref[n], runs[key][n], THRESHOLD, tol) for n in C.PHOTOS}
            ok = all(
                a["missing"] == 0 and a["extra"] == 0 and a["min_iou"] >= MIN_IOU
                for a in per.values()
            )
            agreement["variants"][key] = {
                "precision": m["precision"],
                "runtime": "ai_edge_litert" if m["format"] == "tflite" else "onnxruntime",
                "agrees": ok,
                "objects": sum(a["ref_objects"] for a in per.values()),
                "matched": sum(a["matched"] for a in per.values()),
                "missing": sum(a["missing"] for a in per.values()),
                "extra": sum(a["extra"] for a in per.values()),
                "min_iou": min(a["min_iou"] for a in per.values()),
                "max_score_drift": max(a["max_score_drift"] for a in per.values()),
                "per_photo": per,
                "detections": {n: fmt_dets(d, labels) for n, d in runs[key].items()},
            }
            speed["ms"][key] = {
                "runtime": agreement["variants"][key]["runtime"],
                "precision": m["precision"],
                "size_bytes": m["size_bytes"],
            }
            if not ok and key not in B.CANDIDATES + B.TRIED:
                failed.append(key)
        for threads in (1, 2):
            for key, ms in interleaved_ms(
                out, keys, manifests, threads, args.runs, args.warmup
            ).items():
                speed["ms"][key][f"threads_{threads}"] = ms
        # pairwise with the model's fp32 TFLite
        base = next((k for k in keys if k.endswith("tflite-fp32")), None)
        if base:
            for key in keys:
                if key == base:
                    continue
                tol = TOL.get(manifests[key]["precision"], TOL_REDUCED)
                per = [C.agreement(runs[base][n], runs[key][n], THRESHOLD, tol) for n in C.PHOTOS]
                agreement["variants"][key]["vs_" + base] = {
                    "missing": sum(a["missing"] for a in per),
                    "extra": sum(a["extra"] for a in per),
                    "min_iou": min(a["min_iou"] for a in per),
                    "max_score_drift": max(a["max_score_drift"] for a in per),
                }

    # candidates stay when they agree; tried variants are measured, never shipped
    removed = []
    for key in [k for k in manifests if k in B.CANDIDATES + B.TRIED]:
        a = agreement["variants"][key]
        sp, bsp = speed["ms"][key], speed["ms"].get(CANDIDATE_BASE)
        ratio = round(sp["threads_1"] / bsp["threads_1"], 2) if bsp else None
        size = round(sp["size_bytes"] / bsp["size_bytes"], 2) if bsp else None
        keep = a["agrees"] and key in B.CANDIDATES
        if key in B.TRIED:
            why = f"tried, not shipped: {ratio}x the fp32 latency (1 thread) for {size}x its size"
        else:
            why = "kept" if keep else "agreement does not hold"
        a["candidate"] = {
            "kept": keep,
            "latency_vs_fp32_1_thread": ratio,
            "size_vs_fp32": size,
            "why": why,
        }
        if not keep:
            removed.append(key)

    person = [k for k in families["ssdlite"] if agreement["variants"][k]["agrees"]]
    default = (
        min(person, key=lambda k: speed["ms"][k]["threads_2"]) if person else index.get("default")
    )
    index["variants"] = [v for v in index["variants"] if v["variant"] not in removed]
    index["default"] = default
    index["default_measured"] = {
        "rule": "fastest person variant at 2 threads whose agreement holds",
        "threads_2_ms": {k: speed["ms"][k]["threads_2"] for k in families["ssdlite"]},
    }
    index["verified"] = not failed
    C.write_json_atomic(index_path, index)
    for key in removed:
        shutil.rmtree(os.path.join(out, key), ignore_errors=True)
    agreement["default"] = default
    C.write_json_atomic(os.path.join(out, "agreement.json"), agreement)
    C.write_json_atomic(os.path.join(out, "speed.json"), speed)

    print(
        f"[verify] agreement with the TF reference on {len(C.PHOTOS)} photos "
        f"(objects >= {THRESHOLD}, IoU >= {MIN_IOU}):"
    )
    print(
        f"  {'variant':38} {'objects':>7} {'matched':>7} {'miss':>4} {'extra':>5} "
        f"{'min IoU':>7} {'drift':>6}  result"
    )
    for key, a in agreement["variants"].items():
        res = "ok" if a["agrees"] else "DISAGREES"
        if "candidate" in a:
            res += f" (candidate: {a['candidate']['why']})"
        print(
            f"  {key:38} {a['objects']:7d} {a['matched']:7d} {a['missing']:4d} {a['extra']:5d} "
            f"{a['min_iou']:7.3f} {a['max_score_drift']:6.3f}  {res}"
        )
    print(f"[verify] speed, median of {args.runs} after {args.warmup} warm-ups (ms):")
    print(f"  {'variant':38} {'runtime':15} {'1 thread':>9} {'2 threads':>9}")
    for key, sp in speed["ms"].items():
        print(
            f"  {key:38} {sp['runtime']:15} {sp.get('threads_1', float('nan')):9.2f} "
            f"{sp['threads_2']:9.2f}"
        )
    print(f"[verify] default: {default}")
    if failed:
        print(f"[verify] FAILED: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
