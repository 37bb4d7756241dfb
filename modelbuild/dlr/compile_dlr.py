"""Compile an ONNX classifier into a DLR 1.6 model directory with TVM 0.25, fully offline.

    python modelbuild/dlr/compile_dlr.py --onnx-variant STORE/onnx-fp32 --store STORE \
        [--variant dlr-fp32] [--aws-store build/aws-dlr-model-store]

dlr 1.6.0 embeds a TVM 0.8 graph executor: it loads ``compiled_model.json`` (graph JSON),
``compiled.params`` (``save_param_dict``) and ``compiled.so`` (kernels with TVM 0.8's packed-C
calling convention). TVM 0.25 no longer writes that layout, so this script builds it itself:

1. the ONNX model gets the preprocessing baked in, as AWS's model-store models have it: an NHWC
   float32 input of raw 0..255 pixels, then ``(x - mean) / std`` and NHWC -> NCHW in the graph;
2. ONNX -> Relax (static shapes, weights bound as constants and folded), legalized to TIR and
   fused, so ``main`` is a straight line of ``call_tir`` kernels;
3. the graph JSON is written from that line (one node per kernel call, one ``null`` node per
   input and per constant, one storage entry per tensor), the constants go to ``compiled.params``;
4. the kernels are built with LLVM to an object file and linked with ``shim.c``, which maps the
   0.8 packed-C convention onto tvm-ffi's safe-call symbols.

Outputs: ``STORE/VARIANT`` (manifest.json, labels.txt, compiled.*; added to ``index.json``) and,
with ``--aws-store``, an AWS model-store copy ``DLR-<name>-<arch>-cpu-ImageClassification``
(compiled.*, ``synset.txt`` as a Python dict literal, no manifest).

An embedding variant (``task: embedding``, e.g. ``onnx-fp32-embedding`` -> ``dlr-fp32-embedding``)
gets the same pixel input but no softmax: it outputs the embedding, and its ImageNet head is
copied beside it (docs/imprinting.md). The compile is skipped when its inputs are unchanged: the
sha256 of the source model, this script, ``shim.c``, the pins and the target, recorded in
``STORE/VARIANT/.inputs.sha256`` (the variant is still added to ``index.json``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import tvm
from onnx import TensorProto, helper, numpy_helper
from tvm import relax
from tvm.relax.frontend.onnx import from_onnx

HERE = Path(__file__).resolve().parent
INPUT_NAME = "data"  # as in AWS's DLR models
OUTPUT_NAME = "probabilities"
EMBEDDING_OUTPUT = "embedding"
INPUTS_FILE = ".inputs.sha256"
DLR_DIR = "dlr"
CALL_TIR = tvm.ir.Op.get("relax.call_tir")


def log(msg: str) -> None:
    print(f"[dlr] {msg}", flush=True)


def bake_in(
    model: onnx.ModelProto,
    size: int,
    mean: list[float],
    std: list[float],
    num_classes: int,
    embedding: bool = False,
) -> onnx.ModelProto:
    """A new input, NHWC float32 raw pixels, normalised and made NCHW inside the graph; a softmax
    on the output (AWS's model-store models take pixels and output probabilities), or for an
    embedding model (``num_classes`` = its size) the embedding as it is."""
    graph = model.graph
    inits = {i.name for i in graph.initializer}
    inputs = [i for i in graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise SystemExit(f"expected one input, found {[i.name for i in inputs]}")
    old = inputs[0].name
    graph.input.remove(inputs[0])
    graph.input.insert(
        0, helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, [1, size, size, 3])
    )
    graph.initializer.extend(
        [
            numpy_helper.from_array(np.asarray(mean, np.float32), "ggv_mean"),
            numpy_helper.from_array(np.asarray(std, np.float32), "ggv_std"),
        ]
    )
    nodes = [
        helper.make_node("Sub", [INPUT_NAME, "ggv_mean"], ["ggv_centered"]),
        helper.make_node("Div", ["ggv_centered", "ggv_std"], ["ggv_scaled"]),
        helper.make_node("Transpose", ["ggv_scaled"], [old], perm=[0, 3, 1, 2]),
    ]
    for i, node in enumerate(nodes):
        graph.node.insert(i, node)
    if len(graph.output) != 1:
        raise SystemExit(f"expected one output, found {[o.name for o in graph.output]}")
    logits = graph.output[0]
    if embedding and logits.name == EMBEDDING_OUTPUT:
        pass  # the embedding as it is, under its own name
    elif embedding:
        graph.output.remove(logits)
        graph.node.append(helper.make_node("Identity", [logits.name], [EMBEDDING_OUTPUT]))
        graph.output.append(
            helper.make_tensor_value_info(EMBEDDING_OUTPUT, TensorProto.FLOAT, [1, num_classes])
        )
    else:
        graph.output.remove(logits)
        graph.node.append(helper.make_node("Softmax", [logits.name], [OUTPUT_NAME], axis=-1))
        graph.output.append(
            helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, [1, num_classes])
        )
    onnx.checker.check_model(model)
    return model


def to_relax(model: onnx.ModelProto, size: int) -> tvm.IRModule:
    mod = from_onnx(model, shape_dict={INPUT_NAME: [1, size, size, 3]}, keep_params_in_input=True)
    mod, params = relax.frontend.detach_params(mod)
    names = [p.name_hint for p in mod["main"].params[1:]]
    mod = relax.transform.BindParams("main", dict(zip(names, params["main"], strict=True)))(mod)
    passes = tvm.transform.Sequential(
        [
            relax.transform.DecomposeOpsForInference(),
            relax.transform.LegalizeOps(),
            relax.transform.AnnotateTIROpPattern(),
            relax.transform.FoldConstant(),
            relax.transform.FuseOps(),
            relax.transform.FuseTIR(),
            relax.transform.DeadCodeElimination(),
            relax.transform.AttachGlobalSymbol(),
        ]
    )
    with tvm.transform.PassContext(opt_level=3):
        return passes(mod)


def _sinfo(expr: Any) -> tuple[list[int], str]:
    sinfo = expr.struct_info
    if not isinstance(sinfo, relax.TensorStructInfo) or sinfo.shape is None:
        raise SystemExit(f"not a tensor of static shape: {sinfo}")
    return [int(d) for d in sinfo.shape.values], str(sinfo.dtype)


def graph_json(mod: tvm.IRModule) -> tuple[dict[str, Any], dict[str, np.ndarray], list[str]]:
    """main's call_tir line -> (TVM 0.8 graph JSON, params, kernel names)."""
    main = mod["main"]
    nodes: list[dict[str, Any]] = []
    shapes: list[list[int]] = []
    dtypes: list[str] = []
    arg_nodes: list[int] = []
    params: dict[str, np.ndarray] = {}
    entry: dict[str, int] = {}  # relax var name -> node id
    kernels: list[str] = []

    def null_node(name: str, shape: list[int], dtype: str) -> int:
        nodes.append({"op": "null", "name": name, "inputs": []})
        shapes.append(shape)
        dtypes.append(dtype)
        arg_nodes.append(len(nodes) - 1)
        return len(nodes) - 1

    for p in main.params:
        shape, dtype = _sinfo(p)
        entry[p.name_hint] = null_node(p.name_hint, shape, dtype)
    body = main.body
    for block in body.blocks:
        for binding in block.bindings:
            var, value = binding.var, binding.value
            if isinstance(value, relax.Var):
                entry[var.name_hint] = entry[value.name_hint]
                continue
            if not (isinstance(value, relax.Call) and value.op.same_as(CALL_TIR)):
                raise SystemExit(f"unsupported binding (only call_tir is): {var} = {value}")
            if len(value.args) != 2:
                raise SystemExit(f"call_tir with symbolic shape arguments: {value}")
            kernel = value.args[0].name_hint
            inputs = []
            for arg in value.args[1].fields:
                if isinstance(arg, relax.Constant):
                    data = arg.data.numpy()
                    name = f"p{len(params)}"
                    params[name] = data
                    nid = null_node(name, list(data.shape), str(data.dtype))
                elif isinstance(arg, relax.Var):
                    nid = entry[arg.name_hint]
                else:
                    raise SystemExit(f"unsupported call_tir argument {arg}")
                inputs.append([nid, 0, 0])
            shape, dtype = _sinfo(var)
            if kernel not in kernels:
                kernels.append(kernel)
            nodes.append(
                {
                    "op": "tvm_op",
                    "name": f"{var.name_hint}_{kernel}",
                    "attrs": {
                        "func_name": f"ggv_{kernel}",
                        "num_inputs": str(len(inputs)),
                        "num_outputs": "1",
                        "flatten_data": "0",
                    },
                    "inputs": inputs,
                }
            )
            shapes.append(shape)
            dtypes.append(dtype)
            entry[var.name_hint] = len(nodes) - 1
    result = body.body
    if not isinstance(result, relax.Var):
        raise SystemExit(f"expected one output tensor, found {result}")
    graph = {
        "nodes": nodes,
        "arg_nodes": arg_nodes,
        "heads": [[entry[result.name_hint], 0, 0]],
        "attrs": {
            "dltype": ["list_str", dtypes],
            "shape": ["list_shape", shapes],
            "storage_id": ["list_int", list(range(len(nodes)))],
        },
        "node_row_ptr": list(range(len(nodes) + 1)),
    }
    return graph, params, kernels


def build_library(mod: tvm.IRModule, kernels: list[str], out: Path, target: str) -> None:
    prims = tvm.IRModule(
        {gv: f for gv, f in mod.functions.items() if isinstance(f, tvm.tirx.PrimFunc)}
    )
    lib = tvm.tirx.build(prims, target=target)
    with tempfile.TemporaryDirectory(prefix="ggv-dlr-") as tmp:
        obj = Path(tmp) / "kernels.o"
        lib.write_to_file(str(obj))
        inc = Path(tmp) / "kernels.inc"
        inc.write_text("".join(f"GGV_KERNEL({k})\n" for k in kernels), encoding="utf-8")
        cmd = [
            "gcc",
            "-O2",
            "-shared",
            "-fPIC",
            f'-DGGV_KERNELS="{inc}"',
            str(HERE / "shim.c"),
            str(obj),
            "-o",
            str(out),
            "-lm",
        ]
        subprocess.run(cmd, check=True)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def inputs_hash(source: Path, target: str) -> str:
    """What the compiled variant depends on: the source variant's model, manifest and head,
    this script, the shim, the tool-chain pins and the target."""
    h = hashlib.sha256()
    files = sorted(p for p in source.iterdir() if p.is_file() and not p.name.startswith("."))
    files += [Path(__file__).resolve(), HERE / "shim.c", HERE / "requirements.txt"]
    for f in files:
        h.update(f.name.encode() + b"\0" + sha256(f).encode() + b"\0")
    h.update(f"{target}\0{tvm.__version__}".encode())
    return h.hexdigest()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--onnx-variant", type=Path, required=True, help="the ONNX fp32 variant dir")
    ap.add_argument("--store", type=Path, required=True, help="model store to add the variant to")
    ap.add_argument("--variant", default="dlr-fp32")
    ap.add_argument("--aws-store", type=Path, help="also write an AWS model-store copy here")
    ap.add_argument("--target", default="llvm", help="TVM target of the kernels (generic CPU)")
    args = ap.parse_args()
    t0 = time.monotonic()

    src = json.loads((args.onnx_variant / "manifest.json").read_text(encoding="utf-8"))
    pre, inp = src["preprocess"], src["input"]
    size = int(pre["resize"])
    if inp["shape"] != [1, 3, size, size] or inp["dtype"] != "float32":
        raise SystemExit(f"expected a float32 NCHW input of {size}x{size}, found {inp}")
    embedding = src.get("task") == "embedding"
    outputs = int(src["embedding"]["dim"]) if embedding else int(src.get("num_classes", 1000))
    out = args.store / args.variant
    want = inputs_hash(args.onnx_variant, args.target)
    if cached(out, want, args.aws_store, src["name"]):
        manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
        update_index(args.store, args.variant, manifest)
        log(f"{out} is up to date (inputs unchanged: {want[:12]}…)")
        return 0
    model = bake_in(
        onnx.load(str(args.onnx_variant / src["file"])),
        size,
        pre["mean"],
        pre["std"],
        outputs,
        embedding,
    )
    baked = "preprocessing baked in" + ("" if embedding else " and softmax")
    log(f"ONNX {src['name']} {src['version']} {args.onnx_variant.name} -> Relax ({baked})")
    mod = to_relax(model, size)
    graph, params, kernels = graph_json(mod)
    log(f"{len(graph['nodes'])} graph nodes, {len(kernels)} kernels, {len(params)} params")

    tmp_out = args.store / f".{args.variant}.tmp"
    shutil.rmtree(tmp_out, ignore_errors=True)
    # DLR wants exactly one *.json in its directory: the DLR files get their own, beside the
    # manifest.
    dlr_dir = tmp_out / DLR_DIR
    dlr_dir.mkdir(parents=True)
    t1 = time.monotonic()
    build_library(mod, kernels, dlr_dir / "compiled.so", args.target)
    log(f"kernels built with LLVM ({args.target}) and linked in {time.monotonic() - t1:.0f} s")
    (dlr_dir / "compiled_model.json").write_text(json.dumps(graph), encoding="utf-8")
    tvm.runtime.save_param_dict_to_file(
        {k: tvm.runtime.tensor(v) for k, v in params.items()}, str(dlr_dir / "compiled.params")
    )
    shape = [1, size, size, 3]
    meta = {
        "Model": {
            "Name": src["name"],
            "Version": src["version"],
            "Compiler": f"apache-tvm {tvm.__version__}",
            "Inputs": [{"name": INPUT_NAME, "dtype": "float32", "shape": shape, "layout": "NHWC"}],
            "Outputs": [
                {"name": EMBEDDING_OUTPUT if embedding else OUTPUT_NAME, "dtype": "float32"}
            ],
        }
    }
    (dlr_dir / "compiled.meta").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    labels = (args.onnx_variant / src.get("labels", "labels.txt")).read_text(encoding="utf-8")
    (tmp_out / "labels.txt").write_text(labels, encoding="utf-8")
    manifest = {
        **{k: v for k, v in src.items() if k not in ("sha256", "size_bytes", "built_with")},
        "variant": args.variant,
        "format": "dlr",
        "precision": "fp32",
        "file": f"{DLR_DIR}/compiled.so",
        "input": {"shape": shape, "layout": "NHWC", "dtype": "float32"},
        "output": {
            "kind": "embedding" if embedding else "probabilities",
            "dtype": "float32",
            "shape": [1, outputs],
        },
        # The normalisation is in the model: it takes raw pixels (centre crop and resize only).
        "preprocess": {**pre, "mean": [0, 0, 0], "std": [1, 1, 1]},
        "sha256": sha256(dlr_dir / "compiled.so"),
        "size_bytes": sum(f.stat().st_size for f in dlr_dir.iterdir()),
        "built_with": {"apache-tvm": tvm.__version__, "target": args.target},
    }
    if embedding:
        # The head and its sha256 as the source has them; the embedding's agreement with the
        # source is checked on real photos by tests/imprint (the DLR runtime is not in this venv).
        emb = src["embedding"]
        shutil.copy2(args.onnx_variant / emb["head"], tmp_out / emb["head"])
        manifest["embedding"] = {k: v for k, v in emb.items() if k != "check"}
        manifest["embedding"]["source"] = args.onnx_variant.name
    (tmp_out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    (tmp_out / INPUTS_FILE).write_text(want + "\n", encoding="utf-8")
    shutil.rmtree(out, ignore_errors=True)
    tmp_out.rename(out)
    update_index(args.store, args.variant, manifest)
    log(f"wrote {out}")

    if args.aws_store and not embedding:
        arch = platform.machine()
        name = f"DLR-{src['name']}-{arch}-cpu-ImageClassification"
        aws = args.aws_store / name
        shutil.rmtree(aws, ignore_errors=True)
        aws.mkdir(parents=True)
        for f in ("compiled.so", "compiled_model.json", "compiled.params"):
            shutil.copy2(out / DLR_DIR / f, aws / f)
        names = labels.splitlines()
        (aws / "synset.txt").write_text(repr(dict(enumerate(names))) + "\n", encoding="utf-8")
        log(f"wrote {aws} (AWS model-store layout)")
    log(f"done in {time.monotonic() - t0:.0f} s")
    return 0


def cached(out: Path, want: str, aws_store: Path | None, name: str) -> bool:
    """True when ``out`` was compiled from the same inputs (and its AWS copy, when one is
    asked for a classifier, is there)."""
    try:
        have = (out / INPUTS_FILE).read_text(encoding="utf-8").strip()
        manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if have != want or not (out / manifest["file"]).is_file():
        return False
    if aws_store is None or manifest.get("task") == "embedding":
        return True
    aws = aws_store / f"DLR-{name}-{platform.machine()}-cpu-ImageClassification"
    return (aws / "compiled.so").is_file()


def update_index(store: Path, variant: str, manifest: dict[str, Any]) -> None:
    index_path = store / "index.json"
    if index_path.is_file():
        index = json.loads(index_path.read_text(encoding="utf-8"))
        add_to_index(index, variant, manifest)
        index_path.write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")


def add_to_index(index: dict[str, Any], variant: str, manifest: dict[str, Any]) -> None:
    """Adds (or replaces) the variant's entry in build.py's index.json, marked as ours."""
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
        "task": manifest.get("task", "classification"),
        "built_by": "models-dlr",
    }
    index["variants"] = [e for e in index["variants"] if e.get("variant") != variant] + [entry]
    index["builds"] = [*(v for v in index.get("builds", []) if v != variant), variant]


if __name__ == "__main__":
    sys.exit(main())
