"""``ggvision classify IMAGE...``: classify image files with a model from the model store.

    ggvision classify IMAGE... [--model-store DIR] [--variant V] [--backend B] [--threads N]
                               [--top-k K] [--fast-decode] [--json] [--out PATH]

``--variant auto`` first times every classification variant of the store for a second and takes
the fastest that agrees with the float reference (as ``modelKey: auto`` does, without its cache);
the results' ``model.auto`` says why.

Prints the top-k classes (label, index, probability) of each image, the model's load time and
the per-image decode, preprocess and inference times. ``--out annotated.jpg`` also writes the
image with its answer drawn on it (:func:`ggvision.annotate.annotate`, the live view's drawing:
the top labels and scores, the inference time); with several images ``--out`` is a folder and
each copy keeps its image's name. The store defaults to $GGV_MODEL_STORE,
else ``build/model-store``. Exit codes: 0 success; 1 an image could not be read or decoded;
2 the model cannot be loaded (or bad arguments).

To mount this under another parser: ``p = sub.add_parser("classify"); add_arguments(p);
p.set_defaults(handler=handle)``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from ggvision.annotate import annotate, save_atomic
from ggvision.serving import (
    DEFAULT_BACKEND,
    MODEL_STORE_ENV,
    Backend,
    Model,
    ModelError,
    backends,
    decode,
    preprocess,
    resolve_model_dir,
)
from ggvision.serving.models.auto import AUTO_KEY, Choice, OneOff, choose_now
from ggvision.serving.tasks import Task, get_task
from ggvision_classifier.app import DISTRIBUTION, ROLE

DEFAULT_STORE = Path("build/model-store")
DEFAULT_VARIANT = "tflite-int8"


def default_store() -> Path:
    return Path(os.environ.get(MODEL_STORE_ENV) or DEFAULT_STORE)


def run(
    images: Sequence[str | Path],
    store: str | Path | None = None,
    variant: str = DEFAULT_VARIANT,
    backend: str | None = None,
    threads: int = 2,
    top_k: int = 5,
    *,
    fast_decode: bool = False,
    out: Path | None = None,
) -> list[dict[str, Any]]:
    """Classify ``images`` with one model loaded once. One dict per image, in order::

        {"image": str, "model": {"name", "version", "variant", "backend", "precision",
         "threads", "load_ms"}, "timing_ms": {"decode", "preprocess", "inference"},
         "predictions": [{"label", "index", "score"}, ...]}

    or ``{"image": str, "model": {...}, "error": str}`` when that image cannot be read or
    decoded. ``score`` is a probability (softmax of logits). With ``out`` (a file for one image, a
    folder for several) each classified image is also written annotated, and its dict has
    ``"annotated": str``. Raises ModelError (BackendUnavailable for a missing runtime) when the
    model cannot be loaded."""
    root = Path(store) if store else default_store()
    auto: dict[str, Any] | None = None
    if variant == AUTO_KEY:
        choice = _choose(root, backend or "", threads)
        variant, auto = choice.variant, choice.report()
    model = Model.load(resolve_model_dir(root, variant))
    manifest = model.manifest
    task = get_task(manifest.task).bind(model)  # an embedding/imprinted variant answers too
    name = backend or DEFAULT_BACKEND[manifest.format]
    engine = backends.create(name, model, threads=threads, events=ROLE, distribution=DISTRIBUTION)
    t0 = time.perf_counter()
    engine.load()
    load_ms = (time.perf_counter() - t0) * 1000
    try:
        # One warm-up run, so the first image's time is not the runtime's lazy setup.
        engine.infer(np.zeros(manifest.input.shape, dtype=np.dtype(manifest.input.dtype)))
        info = {
            "name": manifest.name,
            "version": manifest.version,
            "variant": manifest.variant,
            "backend": engine.name,
            "precision": manifest.precision,
            "threads": engine.threads,
            "load_ms": round(load_ms, 3),
        }
        if auto is not None:
            info["auto"] = auto
        results = [
            _classify(Path(p), model, engine, task, info, top_k, fast_decode) for p in images
        ]
    finally:
        engine.close()
    if out is not None:
        for r in results:
            if "error" not in r:
                r["annotated"] = str(_write_annotated(r, out, many=len(images) > 1))
    return results


def _choose(root: Path, backend: str, threads: int) -> Choice:
    def prepare(key: str) -> Any:
        model = Model.load(resolve_model_dir(root, key))
        name = backend or DEFAULT_BACKEND[model.manifest.format]
        engine = backends.create(name, model, threads=threads, events=ROLE)
        engine.load()
        return SimpleNamespace(model=model, backend=engine)

    settings = OneOff(str(root), backend=backend, inference_threads=threads)
    return choose_now(settings, prepare, role=ROLE)


def _write_annotated(result: dict[str, Any], out: Path, *, many: bool) -> Path:
    """The image of ``result`` with its answer drawn on it, at ``out`` (or ``out/<name>``)."""
    from PIL import Image, ImageOps

    src = Path(result["image"])
    with Image.open(src) as opened:
        fmt = opened.format
        image = ImageOps.exif_transpose(opened)
        m = result["model"]
        drawn = annotate(
            image,
            predictions=result["predictions"],
            lines=[f"{m['name']} {m['backend']}", f"{result['timing_ms']['inference']:.1f} ms"],
        )
    dst = out / src.name if many else out
    return save_atomic(drawn, dst, None if dst.suffix else fmt)


def _classify(
    path: Path,
    model: Model,
    engine: Backend,
    task: Task,
    info: dict[str, Any],
    top_k: int,
    fast_decode: bool,
) -> dict[str, Any]:
    manifest = model.manifest
    result: dict[str, Any] = {"image": str(path), "model": info}
    t0 = time.perf_counter()
    try:
        image = decode(path.read_bytes(), fast=fast_decode, spec=manifest.preprocess)
        t1 = time.perf_counter()
        tensor = preprocess(image, manifest)
    except (OSError, ValueError) as exc:
        result["error"] = str(exc)
        return result
    t2 = time.perf_counter()
    scores = engine.infer(tensor)
    t3 = time.perf_counter()
    result["timing_ms"] = {
        "decode": round((t1 - t0) * 1000, 3),
        "preprocess": round((t2 - t1) * 1000, 3),
        "inference": round((t3 - t2) * 1000, 3),
    }
    answer = task.postprocess(scores, model, top_k=top_k, threshold=0.0)
    result["predictions"] = [
        {"label": p.label, "index": p.index, "score": p.score} for p in answer.predictions
    ]
    return result


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", nargs="+", type=Path, metavar="IMAGE", help="image files")
    p.add_argument(
        "--model-store",
        type=Path,
        default=None,
        metavar="DIR",
        help=f"model store (default ${MODEL_STORE_ENV}, else {DEFAULT_STORE})",
    )
    p.add_argument(
        "--variant",
        default=DEFAULT_VARIANT,
        help=f"variant directory, or auto: the fastest agreeing one (default {DEFAULT_VARIANT})",
    )
    p.add_argument(
        "--backend",
        default=None,
        choices=sorted(backends.REGISTRY),
        help="runtime (default: the one for the manifest's format)",
    )
    p.add_argument("--threads", type=_positive, default=2, metavar="N", help="default 2")
    p.add_argument("--top-k", type=_positive, default=5, metavar="K", help="default 5")
    p.add_argument(
        "--fast-decode", action="store_true", help="JPEG: decode at reduced scale (DCT draft)"
    )
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="PATH",
        help="also write the image annotated with its answer (a folder for several images)",
    )


def handle(args: argparse.Namespace) -> int:
    try:
        results = run(
            args.images,
            args.model_store,
            args.variant,
            args.backend,
            args.threads,
            args.top_k,
            fast_decode=args.fast_decode,
            out=args.out,
        )
    except ModelError as exc:
        print(f"ggvision classify: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"ggvision classify: cannot write the annotated image: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        _print_text(results)
    return 1 if any("error" in r for r in results) else 0


def _print_text(results: list[dict[str, Any]]) -> None:
    if not results:
        return
    m = results[0]["model"]
    if "auto" in m:
        print(f"auto: {m['auto']['reason']}")
    print(
        f"model: {m['name']} {m['version']} {m['variant']} on {m['backend']} "
        f"({m['threads']} threads), loaded in {m['load_ms']:.1f} ms"
    )
    for r in results:
        if "error" in r:
            print(f"{r['image']}: error: {r['error']}")
            continue
        t = r["timing_ms"]
        print(
            f"{r['image']}: inference {t['inference']:.2f} ms "
            f"(decode {t['decode']:.2f} ms, preprocess {t['preprocess']:.2f} ms)"
        )
        for p in r["predictions"]:
            print(f"  {p['score']:8.4f}  {p['label']} ({p['index']})")
        if "annotated" in r:
            print(f"  annotated: {r['annotated']}")


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ggvision classify", description="classify image files")
    add_arguments(parser)
    return handle(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
