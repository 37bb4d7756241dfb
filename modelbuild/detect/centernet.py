"""CenterNet-MobileNetV3 (80 COCO classes) from the TFJS graph model of npm @vladmandic/human.

``models/centernet.json`` is a TFJS graph model: its ``modelTopology`` is a GraphDef in protobuf
JSON form and ``weightsManifest`` lists the constants stored in ``centernet.bin`` (float32 weights
stored as float16, int32 constants as they are).  This module turns it back into a plain frozen
GraphDef: the JSON is parsed into a GraphDef, each listed constant gets its value from the .bin,
and the TFJS-only fused ops (``_FusedConv2D``, ``FusedDepthwiseConv2dNative`` with BiasAdd
(+ Relu/Relu6)) are split into Conv2D/DepthwiseConv2dNative + BiasAdd (+ activation), which every
converter understands.

Input ``tower_0/images`` float [1, 512, 512, 3] RGB 0..255; output ``tower_0/detections``
[1, 100, 6] = x1, y1, x2, y2 (pixels of the 512 input), score, class (0-based COCO-80). The graph
has no NMS (the JS code runs one afterwards).
"""

from __future__ import annotations

import json
import os
import re

import numpy as np
from ssd_graph import GraphSession

INPUT = "tower_0/images"
OUTPUT = "tower_0/detections"
SIZE = 512


def _tf():  # type: ignore[no-untyped-def]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    return tf


def load_weights(model_json: dict[str, object], bin_dir: str) -> dict[str, np.ndarray]:
    """The constants of a TFJS weights manifest, dequantised to their original dtype."""
    out: dict[str, np.ndarray] = {}
    for group in model_json["weightsManifest"]:  # type: ignore[attr-defined]
        data = b""
        for p in group["paths"]:
            with open(os.path.join(bin_dir, p), "rb") as f:
                data += f.read()
        off = 0
        for w in group["weights"]:
            shape = [int(s) for s in w["shape"]]
            n = int(np.prod(shape)) if shape else 1
            q = w.get("quantization")
            if q is None:
                dt = np.dtype({"float32": "<f4", "int32": "<i4", "bool": "?"}[w["dtype"]])
                arr = np.frombuffer(data, dt, n, off)
                off += n * dt.itemsize
            elif q["dtype"] == "float16":
                arr = np.frombuffer(data, "<f2", n, off).astype(np.float32)
                off += n * 2
            elif q["dtype"] in ("uint8", "uint16"):
                dt = np.dtype("<u1" if q["dtype"] == "uint8" else "<u2")
                raw = np.frombuffer(data, dt, n, off)
                off += n * dt.itemsize
                arr = (raw * q["scale"] + q["min"]).astype(np.float32)
            else:
                raise ValueError(f"unknown TFJS quantization {q}")
            out[w["name"]] = arr.reshape(shape)
        if off != len(data):
            raise ValueError(f"weights manifest uses {off} of {len(data)} bytes")
    return out


def graph_def(json_path: str):  # type: ignore[no-untyped-def]
    """The frozen GraphDef of a TFJS graph model (fused ops split)."""
    tf = _tf()
    from google.protobuf import json_format

    with open(json_path, encoding="utf-8") as f:
        model = json.load(f)
    weights = load_weights(model, os.path.dirname(json_path))
    topo = dict(model["modelTopology"])
    topo.pop("library", None)
    topo.pop("versions", None)
    gd = json_format.ParseDict(topo, tf.compat.v1.GraphDef())
    out = tf.compat.v1.GraphDef()
    for node in gd.node:
        if node.op == "Const" and node.name in weights:
            node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(weights[node.name]))
        node.ClearField("device")
        if node.op in ("_FusedConv2D", "FusedDepthwiseConv2dNative"):
            _split_fused(node, out)
        else:
            out.node.add().CopyFrom(node)
    return out


def _split_fused(node, out) -> None:  # type: ignore[no-untyped-def]
    fused = [s.decode() for s in node.attr["fused_ops"].list.s]
    if not fused or fused[0] != "BiasAdd" or any(f not in ("Relu", "Relu6") for f in fused[1:]):
        raise ValueError(f"{node.name}: unsupported fused ops {fused}")
    conv = out.node.add()
    conv.name = node.name + "/conv"
    conv.op = "Conv2D" if node.op == "_FusedConv2D" else "DepthwiseConv2dNative"
    conv.input.extend(node.input[:2])
    keep = ("strides", "padding", "data_format", "dilations", "T", "explicit_paddings")
    if conv.op == "Conv2D":
        keep = (*keep, "use_cudnn_on_gpu")
    for k in keep:
        if k in node.attr:
            conv.attr[k].CopyFrom(node.attr[k])
    if conv.attr["padding"].s != b"EXPLICIT":
        conv.attr.pop("explicit_paddings", None)
    last = conv.name
    bias = out.node.add()
    bias.name = node.name if len(fused) == 1 else node.name + "/bias"
    bias.op = "BiasAdd"
    bias.input.extend([last, node.input[2]])
    bias.attr["T"].CopyFrom(node.attr["T"])
    bias.attr["data_format"].CopyFrom(node.attr["data_format"])
    for act in fused[1:]:
        a = out.node.add()
        a.name = node.name
        a.op = act
        a.input.append(bias.name)
        a.attr["T"].CopyFrom(node.attr["T"])


def labels(labels_ts: str) -> list[str]:
    """The 80 COCO labels of human's ``src/object/labels.ts`` (index order)."""
    with open(labels_ts, encoding="utf-8") as f:
        text = f.read()
    found = [(int(c), lab) for c, lab in re.findall(r"class:\s*(\d+),\s*label:\s*'([^']+)'", text)]
    if not found:
        raise ValueError(f"{labels_ts}: no labels found")
    found.sort()
    if [c for c, _ in found] != list(range(1, len(found) + 1)) and [c for c, _ in found] != list(
        range(len(found))
    ):
        raise ValueError(f"{labels_ts}: class ids are not consecutive")
    return [lab for _, lab in found]


class Reference(GraphSession):
    """The converted GraphDef in a TF session: the reference the CenterNet variants are compared
    with (float32 [1,512,512,3] 0..255 in, [1,100,6] out)."""

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(OUTPUT + ":0", {INPUT + ":0": x})
