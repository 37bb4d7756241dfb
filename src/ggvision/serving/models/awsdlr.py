"""AWS's DLR model-store layout (``variant.DLR.ImageClassification.ModelStore``): a directory
of DLR files with ``synset.txt``, read as a :class:`~ggvision.serving.models.store.Model`."""

from __future__ import annotations

import ast
import json
import struct
from pathlib import Path

from pydantic import ValidationError

from ggvision.serving.models.store import Manifest, Model, ModelError, Quantization

SYNSET = "synset.txt"
_PARAMS_MAGIC = 0xF7E58D4F05049CB7  # TVM's save_param_dict


def aws_dlr_model(directory: Path) -> Model:
    """A directory of AWS's DLR model store as a Model: the DLR files (one ``*.so``, ``*.json``
    and ``*.params``, optionally ``*.meta``), labels in ``synset.txt`` (a Python dict literal
    ``{0: 'tench, Tinca tinca', ...}``, or one label a line), preprocessing baked into the model.

    As AWS's DLR image classification does, the image is resized (not cropped) to the model's
    input size and fed as it is: RGB pixel values 0..255 in the input's dtype, HWC, reshaped to
    the model's input shape. A ``.meta`` whose input names a ``layout`` (NCHW or NHWC) gets the
    image in that layout instead, and the shape is checked exactly. The model is expected to
    output probabilities."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ModelError(f"no model at {directory} (no such directory)")
    files = dlr_files(directory)
    try:
        labels = parse_synset((directory / SYNSET).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ModelError(f"labels file of {directory} is missing: {exc}") from exc
    except ValueError as exc:
        raise ModelError(f"{directory / SYNSET}: {exc}") from exc
    shape, dtype, layout = dlr_input(files)
    size = _square_side(shape, directory)
    # A .meta that names the layout gets it (the shape then checked exactly); without one the
    # image goes in as it is (HWC), as AWS's component feeds it.
    if layout == "NCHW":
        fed = {"shape": [1, 3, size, size], "layout": "NCHW"}
    else:
        fed = {"shape": [1, size, size, 3], "layout": "NHWC"}
    quant = None if dtype == "float32" else Quantization(scale=1.0, zero_point=0)
    try:
        manifest = Manifest.model_validate(
            {
                "name": directory.name,
                "version": "aws-model-store",
                "variant": directory.name,
                "format": "dlr",
                "precision": "fp32" if dtype == "float32" else dtype,
                "file": files["so"].name,
                "labels": SYNSET,
                "num_classes": len(labels),
                "input": {
                    **fed,
                    "dtype": dtype,
                    "quantization": quant,
                },
                "output": {"kind": "probabilities"},
                "preprocess": {
                    "color": "RGB",
                    "resize": size,
                    "resize_only": True,
                    "interpolation": "bilinear",
                    "mean": [0.0],
                    "std": [1.0],
                },
                "input_as_is": layout is None,
            }
        )
    except ValidationError as exc:
        raise ModelError(f"{directory}: the model's input cannot be fed: {exc}") from exc
    return Model(directory, manifest, labels)


def parse_synset(text: str) -> list[str]:
    """``synset.txt`` -> labels in index order. A Python dict literal ``{0: 'label', ...}``
    (AWS's format, read with ``ast.literal_eval``: no code runs) or one label a line."""
    stripped = text.strip()
    if not stripped.startswith("{"):
        return [line for line in text.splitlines() if line.strip()]
    try:
        value = ast.literal_eval(stripped)
    except (ValueError, SyntaxError, MemoryError, RecursionError) as exc:
        raise ValueError(f"not a Python dict literal: {exc}") from exc
    if not isinstance(value, dict) or not all(
        isinstance(k, int) and isinstance(v, str) for k, v in value.items()
    ):
        raise ValueError("expected a dict of class index -> label")
    if sorted(value) != list(range(len(value))):
        raise ValueError(f"class indices are not 0..{len(value) - 1}")
    return [value[i] for i in range(len(value))]


def dlr_files(directory: Path) -> dict[str, Path]:
    """DLR's rule: exactly one ``*.so`` (``libdlr.so`` aside), ``*.json`` and ``*.params``."""
    found: dict[str, Path] = {}
    for kind, pattern in (("so", "*.so"), ("json", "*.json"), ("params", "*.params")):
        paths = sorted(p for p in directory.glob(pattern) if p.name != "libdlr.so")
        if len(paths) != 1:
            raise ModelError(
                f"{directory}: a DLR model needs exactly one {pattern} file, found "
                f"{[p.name for p in paths] or 'none'}"
            )
        found[kind] = paths[0]
    metas = sorted(directory.glob("*.meta"))
    if metas:
        found["meta"] = metas[0]
    return found


def dlr_input(files: dict[str, Path]) -> tuple[list[int], str, str | None]:
    """The input's (shape, dtype, layout or None): from the ``.meta`` when it has them, else
    from the graph JSON (the one argument node that is not a parameter; no layout)."""
    try:
        if "meta" in files:
            meta = json.loads(files["meta"].read_text(encoding="utf-8"))
            model = meta.get("Model", meta) if isinstance(meta, dict) else {}
            inputs = model.get("Inputs") or meta.get("Inputs") or []
            if len(inputs) == 1 and "shape" in inputs[0] and "dtype" in inputs[0]:
                layout = inputs[0].get("layout")
                if layout not in (None, "NCHW", "NHWC"):
                    raise ModelError(f"{files['meta']}: unknown input layout {layout!r}")
                return [int(d) for d in inputs[0]["shape"]], str(inputs[0]["dtype"]), layout
        graph = json.loads(files["json"].read_text(encoding="utf-8"))
        weights = set(_param_names(files["params"]))
        nodes, attrs = graph["nodes"], graph["attrs"]
        row = graph.get("node_row_ptr") or list(range(len(nodes) + 1))
        inputs = [n for n in graph["arg_nodes"] if nodes[n]["name"] not in weights]
        if len(inputs) != 1:
            names = [nodes[n]["name"] for n in inputs]
            raise ModelError(f"{files['json']}: expected 1 input, found {names}")
        entry = row[inputs[0]]
        shape = [int(d) for d in attrs["shape"][1][entry]]
        return shape, str(attrs["dltype"][1][entry]), None
    except (OSError, ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
        where = files["so"].parent
        raise ModelError(f"cannot read the input of the DLR model {where}: {exc}") from exc


def _param_names(path: Path) -> list[str]:
    with path.open("rb") as f:
        magic, _reserved, count = struct.unpack("<QQQ", f.read(24))
        if magic != _PARAMS_MAGIC:
            raise ValueError(f"{path.name} is not a TVM parameter file")
        names = []
        for _ in range(count):
            (length,) = struct.unpack("<Q", f.read(8))
            names.append(f.read(length).decode("utf-8"))
    return names


def _square_side(shape: list[int], directory: Path) -> int:
    """The image side of an NCHW or NHWC input of batch 1 and 3 channels."""
    if len(shape) == 4 and shape[0] == 1:
        if shape[1] == 3 and shape[2] == shape[3]:
            return shape[2]
        if shape[3] == 3 and shape[1] == shape[2]:
            return shape[1]
    raise ModelError(
        f"{directory}: input shape {shape} is not one square RGB image (1x3xSxS or 1xSxSx3)"
    )
