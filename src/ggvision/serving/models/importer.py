"""Bring your own detector: write a user's model into a detection model store as a variant.

Inputs (what DeepLens and Coral users have):

* a TF Object Detection API SSD ``frozen_inference_graph.pb`` with a ``.pbtxt`` label map, or the
  DeepLens ``tfmodel.tar.gz`` holding both: converted to TFLite (the ``export_tflite_ssd_graph``
  surgery, post-processing inside the model) or ONNX (tf2onnx, the graph's own NMS kept) by
  ``modelbuild/detect/import_graph.py`` in the build venv ``build/venvs/detect`` (TensorFlow),
  which is created on demand by ``modelbuild/detect/build.sh --venv-only``;
* a Coral-style SSD ``*.tflite`` (ending in ``TFLite_Detection_PostProcess``) with a
  ``labels.txt``: copied as it is.

The variant (manifest.json in the layout of the detection store, the model, labels.txt and, when
given, LICENSE) is written into a temporary directory inside the store, validated by running it
once on a sample photo with its runtime (outputs must match the declared layout), then renamed
into place, and the store's ``index.json`` is rewritten atomically. Any problem raises
:class:`ModelImportError` naming the file and what is wrong, and leaves nothing in the store.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess  # the build venv's converter: a fixed argv, no shell # nosec B404
import sys
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ggvision.serving.models.store import ModelError, file_sha256, resolve_model_dir

STORE_NAME = "detectors"
STORE_COMPONENT = "com.custom.ObjectDetection.ModelStore"
GAP_LABEL = "n/a"  # label ids a label map skips (COCO's 90 ids hold 80 classes)
VENV_ENV = "GGV_DETECT_VENV"
MODELBUILD_ENV = "GGV_MODELBUILD_DIR"
POSTPROCESS = "TFLite_Detection_PostProcess"


class ModelImportError(ModelError):
    """A model cannot be imported: the message names the file and what is wrong."""


@dataclass
class Source:
    """What the user gave, resolved: a graph + label map, or a tflite + labels."""

    kind: str  # "graph" | "tflite"
    model: Path
    labels: Path
    origin: list[Path] = field(default_factory=list)


# --------------------------------------------------------------------------- labels


def parse_label_map(path: Path) -> dict[int, str]:
    """A TF Object Detection API ``.pbtxt`` label map: ``item { id: N name: '..' display_name:
    '..' }``; the display name wins. Ids are the model's class values (1-based)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelImportError(f"{path}: cannot read the label map: {exc}") from exc
    text = re.sub(r"#[^\n]*", "", text)
    items = re.findall(r"\bitem\s*\{([^{}]*)\}", text)
    rest = re.sub(r"\bitem\s*\{[^{}]*\}", "", text).strip()
    if not items or rest:
        found = f"; unparsable text: {rest[:40]!r}" if rest else ""
        raise ModelImportError(
            f"{path}: label map unparsable (expected only "
            f"`item {{ id: N display_name: '...' }}` entries{found})"
        )
    out: dict[int, str] = {}
    for body in items:
        fields: dict[str, str] = {}
        for key, val in re.findall(r"(\w+)\s*:\s*(\"[^\"]*\"|'[^']*'|[^\s]+)", body):
            fields[key] = val.strip("'\"")
        if "id" not in fields or not fields["id"].isdigit():
            raise ModelImportError(f"{path}: an item without an integer id: {body.strip()[:60]!r}")
        name = fields.get("display_name") or fields.get("name")
        if not name:
            raise ModelImportError(f"{path}: item id {fields['id']} has no name or display_name")
        idx = int(fields["id"])
        if idx < 1 or idx in out:
            raise ModelImportError(
                f"{path}: id {idx} is {'duplicated' if idx in out else 'below 1'}"
            )
        out[idx] = name
    return out


def parse_labels_txt(path: Path) -> dict[int, str]:
    """A ``labels.txt``: one label a line (line i = class i), or Coral's ``"<index> <label>"``
    lines (``"0  person"``, ``"0: person"``) that may skip indices."""
    try:
        lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines()]
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelImportError(f"{path}: cannot read the labels: {exc}") from exc
    lines = [ln for ln in lines if ln]
    if not lines:
        raise ModelImportError(f"{path}: no labels in the file")
    indexed = [re.fullmatch(r"(\d+)\s*[:\s]\s*(\S.*)", ln) for ln in lines]
    if all(indexed):
        out: dict[int, str] = {}
        for m in indexed:
            assert m is not None
            idx = int(m.group(1))
            if idx in out:
                raise ModelImportError(f"{path}: index {idx} appears twice")
            out[idx] = m.group(2).strip()
        return out
    return dict(enumerate(lines))


def label_list(labels: dict[int, str], first: int, num_classes: int, path: Path) -> list[str]:
    """Labels by class index 0..num_classes-1 (``first``: the id of class 0)."""
    top = max(labels) - first + 1
    if min(labels) < first or top != num_classes:
        raise ModelImportError(
            f"{path}: label count mismatch: the model has {num_classes} classes but the labels "
            f"run from id {min(labels)} to {max(labels)} "
            f"(expected {first}..{first + num_classes - 1})"
        )
    return [labels.get(i + first, GAP_LABEL) for i in range(num_classes)]


# --------------------------------------------------------------------------- sources


def resolve_sources(files: list[Path], extract_dir: Path) -> Source:
    """Sort the user's files into a :class:`Source` (a tar.gz is unpacked into extract_dir)."""
    if not files:
        raise ModelImportError(
            "nothing to import: give a .pb + .pbtxt, a tfmodel.tar.gz, or a .tflite + labels.txt"
        )
    for f in files:
        if not f.is_file():
            raise ModelImportError(f"{f}: no such file")
    expanded: list[Path] = []
    for f in files:
        if f.name.endswith((".tar.gz", ".tgz", ".tar")):
            expanded.extend(_untar(f, extract_dir))
        else:
            expanded.append(f)
    by = {
        "pb": [f for f in expanded if f.suffix == ".pb"],
        "pbtxt": [f for f in expanded if f.suffix == ".pbtxt"],
        "tflite": [f for f in expanded if f.suffix == ".tflite"],
        "txt": [f for f in expanded if f.suffix == ".txt"],
    }
    known = {p for v in by.values() for p in v}
    unknown = [
        f for f in files if f not in known and not f.name.endswith((".tar.gz", ".tgz", ".tar"))
    ]
    if unknown:
        raise ModelImportError(
            f"{unknown[0]}: not a model or label file (.pb, .pbtxt, .tflite, .txt, .tar.gz)"
        )
    if by["tflite"]:
        if len(by["tflite"]) > 1 or len(by["txt"]) != 1 or by["pb"]:
            raise ModelImportError(
                "a .tflite model needs exactly one labels.txt beside it (and nothing else)"
            )
        return Source("tflite", by["tflite"][0], by["txt"][0], files)
    if by["pb"]:
        frozen = [p for p in by["pb"] if p.name == "frozen_inference_graph.pb"]
        if len(by["pb"]) > 1 and len(frozen) == 1:  # an OD API export dir also has saved_model/
            by["pb"] = frozen
        if len(by["pb"]) > 1:
            raise ModelImportError(
                f"{files[0]}: more than one .pb: {', '.join(p.name for p in by['pb'])}"
            )
        if len(by["pbtxt"]) != 1:
            raise ModelImportError(
                f"{by['pb'][0]}: needs exactly one .pbtxt label map given with it "
                f"(found {len(by['pbtxt'])})"
            )
        return Source("graph", by["pb"][0], by["pbtxt"][0], files)
    raise ModelImportError(f"{files[0]}: no model in it (expected a .pb frozen graph or a .tflite)")


def _untar(path: Path, dest: Path) -> list[Path]:
    target = dest / ("x" + hashlib.sha256(str(path).encode()).hexdigest()[:8])
    try:
        with tarfile.open(path) as tar:
            tar.extractall(target, filter="data")  # the "data" filter refuses unsafe members
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ModelImportError(f"{path}: not a readable tar archive: {exc}") from exc
    return sorted(p for p in target.rglob("*") if p.is_file() and not p.name.startswith("._"))


# --------------------------------------------------------------------------- conversion


def modelbuild_dir() -> Path | None:
    """modelbuild/detect of this checkout (or $GGV_MODELBUILD_DIR)."""
    env = os.environ.get(MODELBUILD_ENV)
    candidates = [Path(env)] if env else []
    candidates.append(Path(__file__).resolve().parents[4] / "modelbuild" / "detect")
    for c in candidates:
        if (c / "import_graph.py").is_file():
            return c
    return None


def build_python(mb: Path) -> Path:
    """The build venv's python, created on demand; ModelImportError when that is impossible."""
    venv = Path(os.environ.get(VENV_ENV) or mb.parents[1] / "build" / "venvs" / "detect")
    py = venv / "bin" / "python"
    if py.is_file() and _has_tf(py):
        return py
    if os.environ.get(VENV_ENV):
        raise ModelImportError(f"{VENV_ENV}={venv}: no TensorFlow build venv there")
    print(f"creating the conversion venv {venv} (TensorFlow; takes minutes)…", file=sys.stderr)
    proc = subprocess.run(  # fixed argv, no shell # nosec B603 B607
        ["bash", str(mb / "build.sh"), "--venv-only"], check=False, stdout=sys.stderr
    )
    if proc.returncode != 0 or not py.is_file():
        raise ModelImportError(
            f"cannot create the conversion venv {venv} "
            f"(bash {mb / 'build.sh'} --venv-only failed); convert the graph elsewhere "
            "or import a .tflite + labels.txt"
        )
    return py


def _has_tf(py: Path) -> bool:
    proc = subprocess.run(  # fixed argv, no shell # nosec B603
        [str(py), "-c", "import importlib.util as u; exit(u.find_spec('tensorflow') is None)"],
        check=False,
        capture_output=True,
    )
    return proc.returncode == 0


def convert_graph(graph: Path, to: str, work: Path) -> tuple[Path, dict[str, Any]]:
    mb = modelbuild_dir()
    if mb is None:
        raise ModelImportError(
            f"{graph}: converting a frozen graph needs modelbuild/detect of the ggvision checkout "
            f"(set {MODELBUILD_ENV}); or import a .tflite + labels.txt"
        )
    py = build_python(mb)
    out = work / "converted"
    proc = subprocess.run(  # fixed argv, no shell # nosec B603
        [
            str(py),
            str(mb / "import_graph.py"),
            "--graph",
            str(graph),
            "--to",
            to,
            "--out",
            str(out),
        ],
        check=False,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln.startswith("error: ")]
        why = lines[-1].removeprefix("error: ") if lines else proc.stderr.strip()[-400:]
        raise ModelImportError(why if str(graph) in why else f"{graph}: {why}")
    info = json.loads((out / "conversion.json").read_text(encoding="utf-8"))
    return out / ("model.tflite" if to == "tflite" else "model.onnx"), info


# --------------------------------------------------------------------------- the manifest


def tflite_spec(path: Path) -> dict[str, Any]:
    """Input, num_classes and output roles of an SSD tflite (TFLite_Detection_PostProcess)."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as exc:
        raise ModelImportError(
            "validating a .tflite needs ai-edge-litert (extra [tflite])"
        ) from exc
    try:
        it = Interpreter(model_path=str(path))
        it.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise ModelImportError(
            f"{path}: not a TFLite model this runtime can load: {_first(exc)}"
        ) from exc
    ops = [o for o in it._get_ops_details() if o["op_name"] == POSTPROCESS]
    outs = it.get_output_details()
    if not ops or len(outs) != 4:
        raise ModelImportError(
            f"{path}: wrong outputs: expected an SSD ending in {POSTPROCESS} with 4 outputs "
            f"(boxes, classes, scores, count), found {len(outs)} output(s) "
            f"{[tuple(int(v) for v in o['shape']) for o in outs]}"
        )
    tensors = {t["index"]: t for t in it.get_tensor_details()}
    cls_shape = [int(v) for v in tensors[int(ops[0]["inputs"][1])]["shape"]]
    num_classes = cls_shape[-1] - 1
    out_ids = [int(i) for i in ops[0]["outputs"]]
    index_of = {int(o["index"]): n for n, o in enumerate(outs)}
    roles = dict(zip(("boxes", "classes", "scores", "count"), out_ids, strict=True))
    if set(roles.values()) != set(index_of):
        raise ModelImportError(
            f"{path}: wrong outputs: the model's outputs are not {POSTPROCESS}'s four"
        )
    output_index = {role: index_of[t] for role, t in roles.items()}
    d = it.get_input_details()
    if len(d) != 1:
        raise ModelImportError(f"{path}: expected one input image tensor, found {len(d)}")
    shape = [int(v) for v in d[0]["shape"]]
    if len(shape) != 4 or shape[0] != 1 or shape[3] != 3 or shape[1] != shape[2]:
        raise ModelImportError(
            f"{path}: the input must be a square [1, S, S, 3] image, not {shape}"
        )
    scale, zp = d[0]["quantization"]
    return {
        "shape": shape,
        "dtype": np.dtype(d[0]["dtype"]).name,
        "quantization": {"scale": float(scale), "zero_point": int(zp)} if scale else None,
        "num_classes": num_classes,
        "output_index": output_index,
        "max_detections": int(outs[output_index["scores"]]["shape"][-1]),
    }


def preprocess_for(spec: dict[str, Any], mean: float | None, std: float | None) -> dict[str, Any]:
    """Float inputs: the TF OD API's (p - 127.5) / 127.5 unless given. Quantized inputs: raw
    pixels (what Coral models take), i.e. mean/std chosen so that q = p exactly."""
    size = spec["shape"][1]
    q = spec["quantization"]
    if mean is None or std is None:
        if spec["dtype"] == "float32":
            mean, std = 127.5, 127.5
        elif q:
            std = 1.0 / q["scale"]
            mean = q["zero_point"] + (128 if spec["dtype"] == "int8" else 0)
        else:
            mean, std = 0.0, 1.0
    return {
        "color": "RGB",
        "resize": size,
        "resize_only": True,
        "interpolation": "bilinear",
        "mean": [mean] * 3,
        "std": [std] * 3,
    }


# --------------------------------------------------------------------------- validation


def make_input(pixels: np.ndarray, manifest: dict[str, Any]) -> np.ndarray:
    pre, spec = manifest["preprocess"], manifest["input"]
    x = (pixels.astype(np.float32) - np.float32(pre["mean"][0])) / np.float32(pre["std"][0])
    x = x[None]
    if spec["dtype"] == "float32":
        return x.astype(np.float32)
    lo, hi = (0, 255) if spec["dtype"] == "uint8" else (-128, 127)
    q = spec.get("quantization")
    x = np.round(x / q["scale"] + q["zero_point"]) if q else np.round(x)
    out: np.ndarray = np.clip(x, lo, hi).astype(spec["dtype"])
    return out


def sample_pixels(size: int, sample: Path | None) -> np.ndarray:
    from PIL import Image

    if sample is not None:
        try:
            with Image.open(sample) as im:
                img = im.convert("RGB")
        except OSError as exc:
            raise ModelImportError(f"{sample}: cannot read the sample photo: {exc}") from exc
    else:
        try:
            import skimage.data

            img = Image.fromarray(skimage.data.astronaut())  # type: ignore[no-untyped-call]
        except ImportError:  # a gradient: enough to check the output layout
            g = np.linspace(0, 255, 256, dtype=np.uint8)
            img = Image.fromarray(
                np.stack([*np.meshgrid(g, g[::-1]), np.full((256, 256), 128, np.uint8)], -1)
            )
    return np.asarray(img.resize((size, size), Image.Resampling.BILINEAR))


def run_once(directory: Path, manifest: dict[str, Any], sample: Path | None) -> dict[str, Any]:
    """Run the variant once on the sample with its runtime; check the outputs against the
    declared layout. Returns what it found (count, best score)."""
    path = directory / manifest["file"]
    x = make_input(sample_pixels(manifest["preprocess"]["resize"], sample), manifest)
    try:
        if manifest["format"] == "tflite":
            from ai_edge_litert.interpreter import Interpreter

            it = Interpreter(model_path=str(path), num_threads=2)
            it.allocate_tensors()
            it.set_tensor(it.get_input_details()[0]["index"], x)
            it.invoke()
            outs = [it.get_tensor(o["index"]) for o in it.get_output_details()]
        else:
            import onnxruntime as ort

            sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            outs = list(sess.run(None, {sess.get_inputs()[0].name: x}))
    except ImportError as exc:
        raise ModelImportError(
            f"validating a {manifest['format']} model needs its runtime: {exc}"
        ) from exc
    except Exception as exc:
        raise ModelImportError(f"{path}: the model fails on a sample photo: {_first(exc)}") from exc
    return check_outputs(outs, manifest, path)


def check_outputs(outs: list[np.ndarray], manifest: dict[str, Any], path: Path) -> dict[str, Any]:
    det = manifest["detection"]
    idx = det["output_index"]

    def bad(why: str) -> ModelImportError:
        return ModelImportError(f"{path}: wrong outputs: {why}")

    if len(outs) != 4:
        raise bad(f"{len(outs)} outputs, the layout {det['outputs']} has 4")
    boxes, classes = np.asarray(outs[idx["boxes"]]), np.asarray(outs[idx["classes"]])
    scores, count = np.asarray(outs[idx["scores"]]), np.asarray(outs[idx["count"]])
    if boxes.ndim != 3 or boxes.shape[0] != 1 or boxes.shape[2] != 4:
        raise bad(f"boxes have shape {boxes.shape}, expected [1, N, 4]")
    n_max = boxes.shape[1]
    if classes.shape != (1, n_max) or scores.shape != (1, n_max) or count.size != 1:
        raise bad(
            f"classes {classes.shape}, scores {scores.shape}, count {count.shape}: expected "
            f"[1, {n_max}], [1, {n_max}], [1]"
        )
    n = float(count.ravel()[0])
    if not (0 <= n <= n_max) or n != int(n):
        raise bad(f"count {n} is not an integer in 0..{n_max}")
    k = int(n)
    s, c, b = scores[0, :k], classes[0, :k], boxes[0, :k]
    if not (np.all(np.isfinite(b)) and np.all((s >= 0) & (s <= 1))):
        raise bad("scores outside 0..1 or boxes not finite")
    labels = np.round(c) - det["class_offset"]
    if (
        np.any(np.abs(c - np.round(c)) > 1e-3)
        or np.any(labels < 0)
        or np.any(labels >= manifest["num_classes"])
    ):
        raise bad(
            f"class values {sorted(set(c.tolist()))[:5]} do not index the "
            f"{manifest['num_classes']} labels"
        )
    return {"count": k, "best_score": round(float(s.max()), 4) if k else 0.0}


# --------------------------------------------------------------------------- the store


def write_index(store: Path, variant: str, manifest: dict[str, Any]) -> None:
    path = store / "index.json"
    if path.is_file():
        try:
            index = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise ModelImportError(f"{path}: not valid JSON: {exc}") from exc
    else:
        index = {
            "schema": 1,
            "name": STORE_NAME,
            "version": "1.0.0",
            "component": STORE_COMPONENT,
            "default": variant,
            "variants": [],
        }
    entry = {
        "variant": variant,
        "dir": variant,
        "format": manifest["format"],
        "precision": manifest["precision"],
        "file": f"{variant}/{manifest['file']}",
        "manifest": f"{variant}/manifest.json",
        "sha256": manifest["sha256"],
        "size_bytes": manifest["size_bytes"],
        "torch_engine": None,
        "task": "detection",
    }
    index["variants"] = [v for v in index.get("variants", []) if v.get("variant") != variant] + [
        entry
    ]
    index.setdefault("default", variant)
    fd, tmp = tempfile.mkstemp(dir=store, prefix=".index-", suffix=".json")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(index, f, indent=2)
        f.write("\n")
    os.chmod(tmp, 0o644)  # mkstemp makes it 0600; a store is world-readable
    os.replace(tmp, path)


def import_model(
    files: list[Path],
    store: Path,
    variant: str,
    *,
    to: str = "tflite",
    name: str | None = None,
    licence: Path | None = None,
    sample: Path | None = None,
    mean: float | None = None,
    std: float | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Import the model in ``files`` into ``store`` as ``variant``; returns its manifest."""
    store = Path(store)
    store.mkdir(parents=True, exist_ok=True)
    try:
        final = resolve_model_dir(store, variant)
    except ModelError as exc:
        raise ModelImportError(f"--variant {variant!r}: {exc}") from exc
    if final.exists() and not force:
        raise ModelImportError(
            f"{final}: the store already has variant {variant!r} (--force replaces it)"
        )
    if licence is not None and not licence.is_file():
        raise ModelImportError(f"{licence}: no such licence file")
    work = Path(tempfile.mkdtemp(dir=store, prefix=f".import-{variant}-"))
    try:
        scratch = Path(tempfile.mkdtemp(prefix="ggv-import-"))
        try:
            manifest = _build_variant(
                files, work, scratch, variant, to, name, licence, sample, mean, std
            )
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        os.chmod(work, 0o755)  # noqa: S103 # mkdtemp: 0700; a store is world-readable # nosec B103
        old = None
        if final.exists():
            old = store / f".old-{variant}-{os.getpid()}"
            os.rename(final, old)
        os.rename(work, final)
        try:
            write_index(store, variant, manifest)
        except BaseException:
            os.rename(final, work)
            if old is not None:
                os.rename(old, final)
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return manifest
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)


def _build_variant(
    files: list[Path],
    work: Path,
    scratch: Path,
    variant: str,
    to: str,
    name: str | None,
    licence: Path | None,
    sample: Path | None,
    mean: float | None,
    std: float | None,
) -> dict[str, Any]:
    src = resolve_sources([Path(f) for f in files], scratch)
    if src.kind == "graph":
        label_ids = parse_label_map(src.labels)  # before the (slow) conversion
        model_path, conv = convert_graph(src.model, to, scratch)
        info = conv["info"]
        num_classes = int(info["num_classes"])
        size = int(info["input_size"][0])
        if to == "tflite":
            spec = tflite_spec(model_path)
            class_offset, first = 0, 1
            if spec["num_classes"] != num_classes:
                raise ModelImportError(
                    f"{model_path}: converted model has {spec['num_classes']} classes, "
                    f"the graph {num_classes}"
                )
        else:
            spec = {
                "shape": [1, size, size, 3],
                "dtype": "uint8",
                "quantization": None,
                "num_classes": num_classes,
                "output_index": _onnx_output_index(model_path),
                "max_detections": int(info["max_detections"]),
            }
            class_offset, first = 1, 1
            mean, std = (0.0, 1.0) if mean is None or std is None else (mean, std)
        labels = label_list(label_ids, first, num_classes, src.labels)
        how = conv["conversion"]
    else:
        spec = tflite_spec(src.model)
        labels_raw = parse_labels_txt(src.labels)
        labels = label_list(labels_raw, 0, spec["num_classes"], src.labels)
        model_path, class_offset, how = src.model, 0, "none (the .tflite as given)"
    fmt = model_path.suffix.lstrip(".")
    target = work / f"model.{fmt}"
    shutil.copyfile(model_path, target)
    (work / "labels.txt").write_text("\n".join(labels) + "\n", encoding="utf-8")
    if licence is not None:
        shutil.copyfile(licence, work / "LICENSE")
    precision = "fp32" if spec["dtype"] == "float32" or fmt == "onnx" else "int8"
    manifest: dict[str, Any] = {
        "schema": 1,
        "name": name or variant,
        "version": "1.0.0",
        "variant": variant,
        "task": "detection",
        "format": fmt,
        "precision": precision,
        "file": target.name,
        "labels": "labels.txt",
        "num_classes": len(labels),
        "input": {
            "shape": spec["shape"],
            "layout": "NHWC",
            "dtype": spec["dtype"],
            "quantization": spec["quantization"],
        },
        "preprocess": preprocess_for(spec, mean, std),
        "detection": {
            "outputs": "boxes_classes_scores_count",
            "output_index": spec["output_index"],
            "box_format": "yxyx_normalized",
            "class_offset": class_offset,
            "nms_iou": None,
            "resize": "stretch",
            "max_detections": spec["max_detections"],
        },
        "licence": {
            "weights": "as given by the user"
            if licence
            else "unknown (imported without a licence)",
            "file": "LICENSE" if licence else None,
            "source": "ggvision model import",
        },
        "source": {
            "files": [p.name for p in src.origin],
            "model": src.model.name,
            "labels": src.labels.name,
            "sha256": file_sha256(src.model),
        },
        "conversion": how,
        "sha256": file_sha256(target),
        "size_bytes": target.stat().st_size,
    }
    manifest["validation"] = run_once(work, manifest, sample)
    (work / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def _onnx_output_index(path: Path) -> dict[str, int]:
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise ModelImportError("validating an ONNX model needs onnxruntime (extra [onnx])") from exc
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name.split(":")[0] for o in sess.get_outputs()]
    role = {
        "detection_boxes": "boxes",
        "detection_classes": "classes",
        "detection_scores": "scores",
        "num_detections": "count",
    }
    out = {role[n]: i for i, n in enumerate(names) if n in role}
    if len(out) != 4:
        raise ModelImportError(f"{path}: wrong outputs {names}")
    return out


def _first(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
