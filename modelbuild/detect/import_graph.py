"""Convert one TF Object Detection API SSD frozen graph for ``ggvision model import``.

    python modelbuild/detect/import_graph.py --graph frozen_inference_graph.pb --to tflite|onnx \\
        --out DIR

Runs in the build venv build/venvs/detect (``bash modelbuild/detect/build.sh --venv-only``
creates it). Writes ``DIR/model.tflite`` or ``DIR/model.onnx`` and ``DIR/conversion.json`` (what
was read from the graph: input size, number of classes, NMS settings); the caller writes the
manifest and validates the model with its runtime. Exit 2 with one line on stderr when the file is
not a graph this converter knows.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import ssd_graph as S  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--graph", required=True)
    p.add_argument("--to", choices=["tflite", "onnx"], default="tflite")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    try:
        gd = S.load_graph_def(args.graph)
        info = S.inspect(gd, args.graph)
        if args.to == "tflite":
            S.convert_tflite(gd, info, os.path.join(args.out, "model.tflite"))
        else:
            S.convert_onnx(args.graph, info, os.path.join(args.out, "model.onnx"), lambda s: None)
    except S.GraphError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    with open(os.path.join(args.out, "conversion.json"), "w", encoding="utf-8") as f:
        json.dump(
            {
                "to": args.to,
                "info": info.as_dict(),
                "conversion": (
                    "export_tflite_ssd_graph surgery + TFLiteConverter "
                    "(TFLite_Detection_PostProcess)"
                    if args.to == "tflite"
                    else "tf2onnx --opset 13, input fixed to [1,H,W,3] uint8 (the graph's NMS kept)"
                ),
            },
            f,
            indent=2,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
