"""``ggvision model import``: a user's detector into a detection model store.

    ggvision model import frozen_inference_graph.pb label_map.pbtxt --store DIR --variant KEY
    ggvision model import tfmodel.tar.gz --store DIR --variant KEY [--to tflite|onnx]
    ggvision model import detect.tflite labels.txt --store DIR --variant KEY

A frozen graph is converted (``--to tflite``, the default, or ``onnx``) in the build venv
build/venvs/detect; a .tflite is copied as it is. The variant is validated by running it once on
a sample photo before it appears in the store (:mod:`ggvision.serving.models.importer`).
Exit 0 imported; 2 a bad file or argument (the message names the file and what is wrong).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def install_model(sub: Any) -> None:
    p = sub.add_parser("model", help="model-store tools")
    model_sub = p.add_subparsers(dest="model_command", required=True, metavar="COMMAND")
    i = model_sub.add_parser(
        "import",
        help="import a TF OD API frozen graph (+ .pbtxt, or tfmodel.tar.gz) or a .tflite "
        "(+ labels.txt) as a detection model-store variant",
        description="Write a detection model-store variant (manifest.json, model, labels.txt) "
        "from a DeepLens-style frozen_inference_graph.pb + .pbtxt label map (or the tfmodel.tar.gz "
        "holding both), or a Coral-style SSD .tflite + labels.txt. Validated on a sample photo; "
        "nothing is left in the store when it fails.",
    )
    i.add_argument("files", nargs="+", type=Path, metavar="FILE")
    i.add_argument("--store", type=Path, required=True, help="the model store directory")
    i.add_argument("--variant", required=True, help="the variant key (its directory name)")
    i.add_argument(
        "--to",
        choices=["tflite", "onnx"],
        default="tflite",
        help="what a frozen graph is converted to (default tflite)",
    )
    i.add_argument("--name", default=None, help="the manifest's model name (default: the key)")
    i.add_argument("--licence", type=Path, default=None, help="the weights' licence text")
    i.add_argument("--sample", type=Path, default=None, help="the validation photo")
    i.add_argument("--mean", type=float, default=None, help="preprocess mean (0..255 pixels)")
    i.add_argument("--std", type=float, default=None, help="preprocess std")
    i.add_argument("--force", action="store_true", help="replace an existing variant")
    i.add_argument("--json", action="store_true", help="print the manifest")
    i.set_defaults(handler=model_import)


def model_import(args: argparse.Namespace) -> int:
    from ggvision.serving.models.importer import import_model

    if (args.mean is None) != (args.std is None):
        from ggvision.serving.models.importer import ModelImportError

        raise ModelImportError("--mean and --std go together")
    manifest = import_model(
        args.files,
        args.store,
        args.variant,
        to=args.to,
        name=args.name,
        licence=args.licence,
        sample=args.sample,
        mean=args.mean,
        std=args.std,
        force=args.force,
    )
    if args.json:
        print(json.dumps(manifest, indent=2))
    else:
        v = manifest["validation"]
        print(
            f"imported {args.variant} into {args.store}: {manifest['format']} "
            f"{manifest['precision']}, {manifest['num_classes']} classes, input "
            f"{manifest['input']['shape']} {manifest['input']['dtype']}; sample run: "
            f"{v['count']} detections, best score {v['best_score']}"
        )
    return 0
