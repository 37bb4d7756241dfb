"""``ggvision detect IMAGE...``: find objects in image files with a model from the detection
model store.

    ggvision detect IMAGE... [--model-store DIR] [--variant V] [--backend B] [--threads N]
                             [--score-threshold S] [--max-detections K] [--label L]...
                             [--json] [--out annotated.jpg]

Prints each image's boxes (label, score, box in 0..1 of the image), the model's load time and
the per-image decode, preprocess and inference times; ``--out`` writes the image with its boxes,
labels and scores drawn (one image: that file; several: ``<stem>-<image stem><suffix>`` beside
it). The store defaults to $GGV_MODEL_STORE, else ``build/detect-store``; the variant to the
store's default (its index.json). Decoding, preprocessing and the boxes are the detector
component's own (:mod:`ggvision.serving.tasks.detection`). Exit codes: 0 success; 1 an image
could not be read or decoded (or --out written); 2 the model cannot be loaded (or bad
arguments).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ggvision.annotate import annotate, save_atomic
from ggvision.serving import (
    DEFAULT_BACKEND,
    MODEL_STORE_ENV,
    Model,
    ModelError,
    backends,
    decode,
    get_task,
    resolve_model_dir,
)
from ggvision.serving.tasks.detection import upright
from ggvision_detector.app import DISTRIBUTION, ROLE
from ggvision_detector.config import DEFAULT_MODEL_KEY

DEFAULT_STORE = Path("build/detect-store")


def default_store() -> Path:
    return Path(os.environ.get(MODEL_STORE_ENV) or DEFAULT_STORE)


def default_variant(store: Path) -> str:
    """The store's ``default`` (index.json), else the detector's default model key."""
    try:
        index = json.loads((store / "index.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return DEFAULT_MODEL_KEY
    value = index.get("default") if isinstance(index, dict) else None
    return value if isinstance(value, str) and value else DEFAULT_MODEL_KEY


def run(
    images: Sequence[str | Path],
    store: str | Path | None = None,
    variant: str | None = None,
    backend: str | None = None,
    threads: int = 2,
    *,
    score_threshold: float = 0.5,
    max_detections: int = 20,
    labels: Sequence[str] = (),
    out: Path | None = None,
) -> list[dict[str, Any]]:
    """Detect in ``images`` with one model loaded once. One dict per image, in order::

        {"image": str, "model": {"name", "version", "variant", "backend", "precision",
         "threads", "load_ms"}, "timing_ms": {"decode", "preprocess", "inference"},
         "detections": [{"label", "index", "score", "box": {"xmin", "ymin", "xmax", "ymax"}}]}

    (plus ``"annotated": path`` with ``out``), or ``{"image", "model", "error": str}`` when that
    image cannot be read or decoded. Raises ModelError (BackendUnavailable for a missing
    runtime) when the model cannot be loaded."""
    root = Path(store) if store else default_store()
    model = Model.load(resolve_model_dir(root, variant or default_variant(root)))
    manifest = model.manifest
    task = get_task(manifest.task)
    if not task.all_outputs:
        raise ModelError(f"model {manifest.variant} is a {manifest.task} model, not a detector")
    name = backend or DEFAULT_BACKEND[manifest.format]
    engine = backends.create(name, model, threads=threads, events=ROLE, distribution=DISTRIBUTION)
    t0 = time.perf_counter()
    engine.load()
    load_ms = (time.perf_counter() - t0) * 1000
    try:
        # One warm-up run (checked as the component checks it), so the first image's time is
        # not the runtime's lazy setup.
        task.check(model, engine.infer_all(np.zeros(manifest.input.shape, manifest.input.dtype)))
        info = {
            "name": manifest.name,
            "version": manifest.version,
            "variant": manifest.variant,
            "backend": engine.name,
            "precision": manifest.precision,
            "threads": engine.threads,
            "load_ms": round(load_ms, 3),
        }
        results = []
        for i, p in enumerate(images):
            path = Path(p)
            target = None if out is None else _out_path(out, path, i, len(images))
            results.append(
                _detect(
                    path,
                    model,
                    engine,
                    info,
                    score_threshold=score_threshold,
                    max_detections=max_detections,
                    labels=labels,
                    out=target,
                )
            )
        return results
    finally:
        engine.close()


def _out_path(out: Path, image: Path, i: int, n: int) -> Path:
    if n == 1:
        return out
    return out.with_name(f"{out.stem}-{i:02d}-{image.stem}{out.suffix}")


def _detect(
    path: Path,
    model: Model,
    engine: Any,
    info: dict[str, Any],
    *,
    score_threshold: float,
    max_detections: int,
    labels: Sequence[str],
    out: Path | None,
) -> dict[str, Any]:
    task = get_task(model.manifest.task)
    result: dict[str, Any] = {"image": str(path), "model": info}
    t0 = time.perf_counter()
    try:
        image = decode(path.read_bytes())
        t1 = time.perf_counter()
        tensor, context = task.prepare(image, model)
    except (OSError, ValueError) as exc:
        result["error"] = str(exc)
        return result
    t2 = time.perf_counter()
    outputs = engine.infer_all(tensor)
    t3 = time.perf_counter()
    answer = task.answer(
        outputs,
        model,
        top_k=max_detections,
        threshold=score_threshold,
        context=context,
        options={"labels": list(labels)},
    )
    result["timing_ms"] = {
        "decode": round((t1 - t0) * 1000, 3),
        "preprocess": round((t2 - t1) * 1000, 3),
        "inference": round((t3 - t2) * 1000, 3),
    }
    found = [d.model_dump() for d in answer.detections or []]
    result["detections"] = found
    if out is not None:
        drawn = annotate(upright(image), detections=found)  # type: ignore[arg-type]
        try:
            save_atomic(drawn, out)
        except OSError as exc:
            result["error"] = f"cannot write {out}: {exc}"
            return result
        result["annotated"] = str(out)
    return result


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", nargs="+", type=Path, metavar="IMAGE", help="image files")
    p.add_argument(
        "--model-store",
        type=Path,
        default=None,
        metavar="DIR",
        help=f"detection model store (default ${MODEL_STORE_ENV}, else {DEFAULT_STORE})",
    )
    p.add_argument(
        "--variant", default=None, help="variant directory (default: the store's default)"
    )
    p.add_argument(
        "--backend",
        default=None,
        choices=sorted(backends.REGISTRY),
        help="runtime (default: the one for the manifest's format)",
    )
    p.add_argument("--threads", type=_positive, default=2, metavar="N", help="default 2")
    p.add_argument(
        "--score-threshold", type=_fraction, default=0.5, metavar="S", help="default 0.5"
    )
    p.add_argument("--max-detections", type=_positive, default=20, metavar="K", help="default 20")
    p.add_argument(
        "--label",
        action="append",
        default=[],
        metavar="L",
        help="report only this label (repeat for several; default: all)",
    )
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="FILE",
        help="write the image with its boxes drawn (several images: FILE-NN-<image>.<ext>)",
    )


def handle(args: argparse.Namespace) -> int:
    try:
        results = run(
            args.images,
            args.model_store,
            args.variant,
            args.backend,
            args.threads,
            score_threshold=args.score_threshold,
            max_detections=args.max_detections,
            labels=args.label,
            out=args.out,
        )
    except ModelError as exc:
        print(f"ggvision detect: error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        _print_text(results)
    return 1 if any("error" in r for r in results) else 0


def _print_text(results: list[dict[str, Any]]) -> None:
    if not results:
        return
    m = results[0]["model"]
    print(
        f"model: {m['name']} {m['version']} {m['variant']} on {m['backend']} "
        f"({m['threads']} threads), loaded in {m['load_ms']:.1f} ms"
    )
    for r in results:
        if "error" in r and "detections" not in r:
            print(f"{r['image']}: error: {r['error']}")
            continue
        t = r["timing_ms"]
        print(
            f"{r['image']}: {len(r['detections'])} found, inference {t['inference']:.2f} ms "
            f"(decode {t['decode']:.2f} ms, preprocess {t['preprocess']:.2f} ms)"
        )
        for d in r["detections"]:
            b = d["box"]
            print(
                f"  {d['score']:8.4f}  {d['label']} ({d['index']})  "
                f"[{b['xmin']:.3f}, {b['ymin']:.3f}, {b['xmax']:.3f}, {b['ymax']:.3f}]"
            )
        if "annotated" in r:
            print(f"  drawn: {r['annotated']}")
        if "error" in r:
            print(f"  error: {r['error']}")


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return value


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError("must be between 0 and 1")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ggvision detect", description="detect objects in images")
    add_arguments(parser)
    return handle(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
