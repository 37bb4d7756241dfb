"""``ggvision learn``: teach new classes from a folder of images by weight imprinting.

    ggvision learn --data DIR --output STORE/VARIANT [--test-ratio R] [--mode extend|replace]
                   [--model-store DIR] [--base VARIANT] [--backend B] [--threads N]
                   [--seed S] [--json]
    ggvision learn export --work-dir DIR --output STORE/VARIANT [--mode extend|replace]
                   [--model-store DIR] [--base VARIANT]
    ggvision learn list --work-dir DIR [--json]

``--data``: one folder per class (its name is the label), images inside, as Coral's
``classification_transfer_learning.py --data``. Each class's images are split (seeded) into
shots and a held-out ``--test-ratio`` (default 0.25); the shots' embeddings (the ``--base``
embedding variant, default tflite-fp32-embedding) become the classes (nothing is retrained);
the held-out images are classified by the new variant as the classifier will answer, and the
top-1 is printed, overall and per class (``--json``: ``{"top1", "per_class", "train", "test"}``).

``list`` counts the classes a classifier learned live (its work directory's file): ``classes``,
``shots`` in total and ``variant``, the figures of its status report's ``learning`` and of the
learning topic's ``list`` answer, with the shots per class (``per_class``).

``export`` writes the classes a classifier learned live (its work directory's
``learned/classes.npz``) as such a variant, so a class taught on one device deploys to a fleet.

The variant (embedding model, ImageNet head, ``imprinted.npz``, labels, manifest with
``task: imprinted``) loads like any other: ``ggvision classify --model-store STORE --variant
VARIANT``, or the classifier's ``modelKey``. Exit codes: 0 done; 1 an image could not be read;
2 bad arguments or the base model cannot be loaded. See docs/imprinting.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ggvision.errors import GgvisionError
from ggvision.serving import (
    DEFAULT_BACKEND,
    Backend,
    Model,
    ModelError,
    backends,
    decode,
    resolve_model_dir,
)
from ggvision.serving.imprint import ClassStore, LearnError, Limits
from ggvision.serving.tasks.embedding import EmbeddingTask
from ggvision_classifier.app import DISTRIBUTION, ROLE
from ggvision_classifier.classify_cli import default_store

DEFAULT_BASE = "tflite-fp32-embedding"
IMPRINT_FILE = "imprinted.npz"
LEARNED_FILE = Path("learned") / "classes.npz"  # in the classifier's work directory
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}

Mode = Literal["extend", "replace"]


class ImageUnreadable(GgvisionError):
    """An image of the data folder cannot be read or decoded."""


class Extractor:
    """An embedding variant on its backend: image file or array -> raw embedding."""

    def __init__(self, model: Model, backend: str | None = None, threads: int = 2) -> None:
        if model.manifest.embedding is None:
            raise ModelError(
                f"variant {model.directory.name} is not an embedding model (task "
                f"{model.manifest.task}); use an *-embedding variant"
            )
        self.model = model
        self.task = EmbeddingTask().bind(model)
        name = backend or DEFAULT_BACKEND[model.manifest.format]
        self.backend: Backend = backends.create(
            name, model, threads=threads, events=ROLE, distribution=DISTRIBUTION
        )
        self.backend.load()

    def embed(self, image: Any) -> np.ndarray:
        """Raw embedding of an image (a path or a decoded image / array); ImageUnreadable for
        a file that cannot be read or decoded."""
        try:
            if isinstance(image, Path):
                image = decode(image.read_bytes(), spec=self.model.manifest.preprocess)
            tensor = self.task.preprocess(image, self.model)
        except (OSError, ValueError) as exc:
            raise ImageUnreadable(
                f"{image if isinstance(image, Path) else 'image'}: {exc}"
            ) from exc
        return self.backend.infer(tensor)

    def close(self) -> None:
        self.backend.close()


def class_folders(data: Path) -> dict[str, list[Path]]:
    """label -> its image files, sorted (folders without images are skipped)."""
    if not data.is_dir():
        raise ValueError(f"--data {data} is not a directory")
    out = {}
    for d in sorted(p for p in data.iterdir() if p.is_dir()):
        files = sorted(f for f in d.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        if files:
            out[d.name] = files
    if not out:
        raise ValueError(f"--data {data} has no class folders with images")
    return out


def split(
    files: dict[str, list[Path]], test_ratio: float, seed: int
) -> tuple[dict[str, list[Path]], dict[str, list[Path]]]:
    """Per class, a seeded shuffle: the held-out share (at least one when the class has two
    images and the ratio is above 0), the rest the shots (at least one)."""
    rng = np.random.default_rng(seed)
    train, test = {}, {}
    for label, paths in files.items():
        order = [paths[i] for i in rng.permutation(len(paths))]
        n_test = round(len(order) * test_ratio)
        if test_ratio > 0 and len(order) >= 2:
            n_test = max(1, n_test)
        n_test = min(n_test, len(order) - 1)
        test[label], train[label] = order[:n_test], order[n_test:]
    return train, test


def write_variant(
    base: Model, store: ClassStore, output: Path, mode: Mode, extra: dict[str, Any] | None = None
) -> Path:
    """Write ``store``'s classes as a variant at ``output`` (STORE/VARIANT): the base's model
    file and head, ``imprinted.npz``, labels and manifest, in a temp directory renamed into
    place; the store's ``index.json`` (when there is one) gets the variant's entry."""
    if not len(store.counts()):
        raise LearnError("NO_CLASSES", "no classes to write")
    output = Path(output)
    root, name = output.parent, output.name
    resolve_model_dir(root, name)  # refuses a bad variant name
    root.mkdir(parents=True, exist_ok=True)
    bm = base.manifest
    assert bm.embedding is not None
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=root))
    try:
        shutil.copy2(base.file, tmp / bm.file)
        shutil.copy2(base.directory / bm.embedding.head, tmp / bm.embedding.head)
        store.save(tmp / IMPRINT_FILE)
        learned = list(store.counts())
        head_labels = base.labels if mode == "extend" else []
        labels = [*head_labels, *learned]
        (tmp / "labels.txt").write_text("\n".join(labels) + "\n", encoding="utf-8")
        raw = json.loads((base.directory / "manifest.json").read_text(encoding="utf-8"))
        raw.update(
            variant=name,
            task="imprinted",
            labels="labels.txt",
            num_classes=len(labels),
            imprint={
                "mode": mode,
                "classes": IMPRINT_FILE,
                "scale": 10.0,
                "base_variant": bm.variant,
                "learned": store.counts(),
                **(extra or {}),
            },
        )
        (tmp / "manifest.json").write_text(json.dumps(raw, indent=2) + "\n", encoding="utf-8")
        Model.load(tmp)  # what was written loads
        old = root / f".{name}.old"
        shutil.rmtree(old, ignore_errors=True)
        if output.exists():
            os.rename(output, old)
        os.rename(tmp, output)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _index(root, raw)
    return output


def _index(root: Path, manifest: dict[str, Any]) -> None:
    path = root / "index.json"
    if not path.is_file():
        return
    index = json.loads(path.read_text(encoding="utf-8"))
    name = manifest["variant"]
    entry = {
        "variant": name,
        "dir": name,
        "format": manifest["format"],
        "precision": manifest["precision"],
        "file": f"{name}/{manifest['file']}",
        "manifest": f"{name}/manifest.json",
        "sha256": manifest["sha256"],
        "size_bytes": manifest["size_bytes"],
        "torch_engine": manifest.get("torch_engine"),
        "task": "imprinted",
    }
    index["variants"] = [v for v in index.get("variants", []) if v.get("variant") != name]
    index["variants"].append(entry)
    tmp = path.with_name(f".index.json.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def learn(
    data: Path,
    output: Path,
    *,
    test_ratio: float = 0.25,
    mode: Mode = "extend",
    store: Path | None = None,
    base: str = DEFAULT_BASE,
    backend: str | None = None,
    threads: int = 2,
    seed: int = 0,
    limits: Limits | None = None,
) -> dict[str, Any]:
    """Learn ``data``'s classes, write the variant ``output``, return the held-out report
    ``{"top1", "per_class", "train", "test", "variant"}`` (top1 None when nothing is held out)."""
    files = class_folders(data)
    train, test = split(files, test_ratio, seed)
    model = Model.load(resolve_model_dir(store or default_store(), base))
    ex = Extractor(model, backend, threads)
    try:
        shots = ClassStore(ex.task.dim, limits or Limits(max_shots=10_000, max_classes=10_000))
        shots.meta = {"model": model.manifest.variant, "sha256": model.manifest.sha256}
        for label, paths in train.items():
            shots.check_label(label)
            for p in paths:
                shots.add(label, ex.embed(p))
        task = ex.task.with_classes(shots.classes(), mode)
        index = {label: i for i, label in enumerate(task.labels())}
        per_class: dict[str, float] = {}
        right = total = 0
        for label, paths in test.items():
            ok = 0
            for p in paths:
                answer = task.postprocess(ex.embed(p), model, top_k=1, threshold=0.0)
                top = answer.predictions[0].index if answer.predictions else -1
                ok += int(top == index[label])
            if paths:
                per_class[label] = round(ok / len(paths), 4)
            right, total = right + ok, total + len(paths)
    finally:
        ex.close()
    n_train = sum(len(v) for v in train.values())
    report: dict[str, Any] = {
        "top1": round(right / total, 4) if total else None,
        "per_class": per_class,
        "train": n_train,
        "test": total,
    }
    write_variant(model, shots, output, mode, {"heldout": report})
    return {**report, "variant": str(output)}


def export(
    work_dir: Path,
    output: Path,
    *,
    mode: Mode = "extend",
    store: Path | None = None,
    base: str | None = None,
) -> dict[str, Any]:
    """Write the classes learned live in a classifier's ``work_dir`` as the variant ``output``;
    the base is the embedding variant they were learned on (recorded with them) unless
    ``base`` names another."""
    classes = ClassStore.load(Path(work_dir) / LEARNED_FILE)
    name = base or str(classes.meta.get("model") or DEFAULT_BASE)
    model = Model.load(resolve_model_dir(store or default_store(), name))
    if model.manifest.embedding is None or model.manifest.embedding.dim != classes.dim:
        raise ModelError(f"variant {name} is not an embedding model of {classes.dim} values")
    write_variant(model, classes, output, mode)
    return {"variant": str(output), "classes": classes.counts(), "base": name}


def listing(work_dir: Path) -> dict[str, Any]:
    """The classes learned live in a classifier's ``work_dir``, counted as its status report
    counts them (``classes``, ``shots``, ``variant``), with ``per_class``; none learned (no
    file yet) is zero classes."""
    path = Path(work_dir) / LEARNED_FILE
    if not path.is_file():
        return {"classes": 0, "shots": 0, "variant": None, "per_class": {}}
    store = ClassStore.load(path)
    return {**store.summary(), "per_class": store.counts()}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "action",
        nargs="?",
        choices=["export", "list"],
        help="export: a device's live-learned classes as a variant; list: count them",
    )
    p.add_argument("--data", type=Path, metavar="DIR", help="one folder of images per class")
    p.add_argument("--work-dir", type=Path, metavar="DIR", help="export: the classifier's work dir")
    p.add_argument("--output", type=Path, metavar="STORE/VARIANT")
    p.add_argument("--test-ratio", type=_ratio, default=0.25, metavar="R", help="default 0.25")
    p.add_argument("--mode", choices=["extend", "replace"], default="extend")
    p.add_argument("--model-store", type=Path, default=None, metavar="DIR")
    p.add_argument("--base", default=None, help=f"embedding variant (default {DEFAULT_BASE})")
    p.add_argument("--backend", default=None, choices=sorted(backends.REGISTRY))
    p.add_argument("--threads", type=int, default=2, metavar="N")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print the report as JSON")


def handle(args: argparse.Namespace) -> int:
    if args.action != "list" and args.output is None:
        print("ggvision learn: error: --output is required", file=sys.stderr)
        return 2
    try:
        if args.action == "list":
            if args.work_dir is None:
                print("ggvision learn list: error: --work-dir is required", file=sys.stderr)
                return 2
            found = listing(args.work_dir)
            if args.json:
                print(json.dumps(found))
            else:
                print(f"{found['classes']} classes, {found['shots']} shots ({found['variant']})")
                for label, n in found["per_class"].items():
                    print(f"  {n:4d}  {label}")
            return 0
        if args.action == "export":
            if args.work_dir is None:
                print("ggvision learn export: error: --work-dir is required", file=sys.stderr)
                return 2
            out = export(
                args.work_dir, args.output, mode=args.mode, store=args.model_store, base=args.base
            )
            print(json.dumps(out) if args.json else f"wrote {out['variant']}: {out['classes']}")
            return 0
        if args.data is None:
            print("ggvision learn: error: --data is required", file=sys.stderr)
            return 2
        report = learn(
            args.data,
            args.output,
            test_ratio=args.test_ratio,
            mode=args.mode,
            store=args.model_store,
            base=args.base or DEFAULT_BASE,
            backend=args.backend,
            threads=args.threads,
            seed=args.seed,
        )
    except (ImageUnreadable, OSError) as exc:
        print(f"ggvision learn: error: {exc}", file=sys.stderr)
        return 1
    except (ModelError, LearnError, ValueError) as exc:
        print(f"ggvision learn: error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({k: report[k] for k in ("top1", "per_class", "train", "test")}))
        return 0
    top1 = report["top1"]
    print(f"wrote {report['variant']}: {report['train']} shots, {report['test']} held out")
    print("held-out top-1: " + ("-" if top1 is None else f"{top1:.3f}"))
    for label, acc in report["per_class"].items():
        print(f"  {acc:6.3f}  {label}")
    return 0


def _ratio(text: str) -> float:
    value = float(text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError("must be in [0, 1)")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ggvision learn", description=__doc__)
    add_arguments(parser)
    return handle(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
