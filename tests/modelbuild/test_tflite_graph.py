"""The TFLite graph clean-up passes (modelbuild/tflite_graph.py) on hand-built graphs and on the
built tflite-int8 model: SAME pads folded into the stride-2 convs, int8 residual ADDs."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ai_edge_litert")
flatbuffers = pytest.importorskip("flatbuffers")

from ai_edge_litert import schema_py_generated as S  # noqa: E402
from ai_edge_litert.interpreter import Interpreter  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "modelbuild"))
import tflite_graph as TG  # noqa: E402

BUILT = ROOT / "build" / "model-store" / "tflite-int8" / "model.tflite"


class Toy:
    """A TFLite model assembled with the flatbuffers object API, one op at a time."""

    def __init__(self) -> None:
        self.m = S.ModelT()
        self.m.version = 3
        self.m.buffers = [S.BufferT()]
        self.m.operatorCodes = []
        self.g = S.SubGraphT()
        self.g.tensors, self.g.operators = [], []
        self.m.subgraphs = [self.g]

    def tensor(self, shape, dtype, data=None, scale=None, zp=0) -> int:
        t = S.TensorT()
        t.shape, t.type, t.name = list(shape), dtype, f"t{len(self.g.tensors)}".encode()
        t.buffer = 0
        if data is not None:
            b = S.BufferT()
            b.data = np.frombuffer(np.ascontiguousarray(data).tobytes(), dtype=np.uint8)
            self.m.buffers.append(b)
            t.buffer = len(self.m.buffers) - 1
        if scale is not None:
            q = S.QuantizationParametersT()
            q.scale, q.zeroPoint = list(np.atleast_1d(scale)), list(np.atleast_1d(zp))
            t.quantization = q
        self.g.tensors.append(t)
        return len(self.g.tensors) - 1

    def op(self, code, inputs, outputs, options_type=0, options=None) -> None:
        codes = [c.builtinCode for c in self.m.operatorCodes]
        if code not in codes:
            oc = S.OperatorCodeT()
            oc.builtinCode, oc.deprecatedBuiltinCode, oc.version = code, min(code, 127), 1
            self.m.operatorCodes.append(oc)
            codes.append(code)
        o = S.OperatorT()
        o.opcodeIndex, o.inputs, o.outputs = codes.index(code), list(inputs), list(outputs)
        o.builtinOptionsType, o.builtinOptions = options_type, options
        self.g.operators.append(o)

    def pack(self, inputs, outputs) -> bytes:
        self.g.inputs, self.g.outputs = list(inputs), list(outputs)
        b = flatbuffers.Builder(1024)
        b.Finish(self.m.Pack(b), file_identifier=b"TFL3")
        return bytes(b.Output())


def _run(buf: bytes, tmp_path: Path, name: str, feeds: list[np.ndarray]) -> np.ndarray:
    path = tmp_path / name
    path.write_bytes(buf)
    interp = Interpreter(model_path=str(path))
    interp.allocate_tensors()
    for d, x in zip(interp.get_input_details(), feeds, strict=True):
        interp.set_tensor(d["index"], x)
    interp.invoke()
    return interp.get_tensor(interp.get_output_details()[0]["index"])


def _ops(buf: bytes) -> list[int]:
    graph = TG.Graph(buf)
    return [graph.code(i) for i in graph.live()]


def _pad_conv_model(size: int, kernel: int, pads: list[int]) -> bytes:
    """int8 NHWC -> TRANSPOSE -> PAD(NCHW) -> TRANSPOSE -> depthwise conv (VALID, stride 2)."""
    rng = np.random.default_rng(size * 10 + kernel)
    c, s = 4, 0.05
    padded = size + sum(pads)
    out = (padded - kernel) // 2 + 1
    t = Toy()
    x = t.tensor([1, size, size, c], TG.INT8, scale=s, zp=-3)
    perm1 = t.tensor([4], TG.INT32, np.array(TG.NHWC_TO_NCHW, np.int32))
    perm2 = t.tensor([4], TG.INT32, np.array(TG.NCHW_TO_NHWC, np.int32))
    pad_c = t.tensor([4, 2], TG.INT32, np.array([[0, 0], [0, 0], pads, pads], np.int32))
    a = t.tensor([1, c, size, size], TG.INT8, scale=s, zp=-3)
    b = t.tensor([1, c, padded, padded], TG.INT8, scale=s, zp=-3)
    d = t.tensor([1, padded, padded, c], TG.INT8, scale=s, zp=-3)
    w = rng.integers(-127, 128, (1, kernel, kernel, c)).astype(np.int8)
    wt = t.tensor(w.shape, TG.INT8, w, scale=[0.01] * c, zp=[0] * c)
    t.g.tensors[wt].quantization.quantizedDimension = 3
    b32 = rng.integers(-50, 50, c).astype(np.int32)
    bias = t.tensor([c], TG.INT32, b32, scale=[s * 0.01] * c, zp=[0] * c)
    y = t.tensor([1, out, out, c], TG.INT8, scale=0.1, zp=2)
    t.op(TG.TRANSPOSE, [x, perm1], [a])
    t.op(TG.PAD, [a, pad_c], [b])
    t.op(TG.TRANSPOSE, [b, perm2], [d])
    opts = S.DepthwiseConv2DOptionsT()
    opts.padding, opts.strideH, opts.strideW, opts.depthMultiplier = S.Padding.VALID, 2, 2, 1
    opts.dilationHFactor = opts.dilationWFactor = 1
    t.op(TG.DEPTHWISE_CONV_2D, [d, wt, bias], [y], S.BuiltinOptions.DepthwiseConv2DOptions, opts)
    return t.pack([x], [y])


@pytest.mark.parametrize(
    ("size", "kernel", "pads", "folds"),
    [
        (8, 3, [0, 1], True),  # SAME for k3 s2 on an even size
        (8, 5, [1, 2], True),  # SAME for k5 s2
        (8, 3, [1, 1], False),  # symmetric pad: not SAME, must stay
    ],
)
def test_same_pad_folds_into_the_conv_exactly(tmp_path, size, kernel, pads, folds):
    buf = _pad_conv_model(size, kernel, pads)
    new, stats = TG.rewrite(buf)
    assert stats["pads_folded"] == int(folds)
    ops = _ops(new)
    assert (TG.PAD in ops, TG.TRANSPOSE in ops) == (not folds, not folds)
    x = np.random.default_rng(1).integers(-128, 128, (1, size, size, 4)).astype(np.int8)
    before = _run(buf, tmp_path, "a.tflite", [x])
    after = _run(new, tmp_path, "b.tflite", [x])
    np.testing.assert_array_equal(before, after)


def test_float_residual_chain_becomes_int8_adds(tmp_path):
    """a, b, c int8: DEQ -> (a + b) -> QUANTIZE, and the float sum + DEQ(c) -> QUANTIZE."""
    t = Toy()
    shape = [1, 3, 3, 8]
    qparams = ((0.1, 1), (0.07, -2), (0.2, 0))
    a, b, c = (t.tensor(shape, TG.INT8, scale=sc, zp=zp) for sc, zp in qparams)
    fa, fb, fc, s1, s2 = (t.tensor(shape, TG.FLOAT32) for _ in range(5))
    # output scales wide enough for the sums (as calibration makes them): no saturation
    q1 = t.tensor(shape, TG.INT8, scale=0.18, zp=-1)
    q2 = t.tensor(shape, TG.INT8, scale=0.38, zp=3)
    for src, dst in ((a, fa), (b, fb), (c, fc)):
        t.op(TG.DEQUANTIZE, [src], [dst])
    add = S.AddOptionsT()
    t.op(TG.ADD, [fa, fb], [s1], S.BuiltinOptions.AddOptions, add)
    t.op(TG.QUANTIZE, [s1], [q1])
    t.op(TG.ADD, [fc, s1], [s2], S.BuiltinOptions.AddOptions, add)
    t.op(TG.QUANTIZE, [s2], [q2])
    buf = t.pack([a, b, c], [q2])
    new, stats = TG.rewrite(buf)
    assert stats["adds_to_int8"] == 2
    assert sorted(_ops(new)) == [TG.ADD, TG.ADD]  # every DEQUANTIZE/QUANTIZE gone
    rng = np.random.default_rng(2)
    feeds = [rng.integers(-128, 128, shape).astype(np.int8) for _ in range(3)]
    before = _run(buf, tmp_path, "a.tflite", feeds).astype(int)
    after = _run(new, tmp_path, "b.tflite", feeds).astype(int)
    # the intermediate sum is re-quantized once: at most one step of q2 from rounding
    assert np.abs(before - after).max() <= 1


@pytest.mark.skipif(not BUILT.is_file(), reason="no model-store build (make models)")
def test_built_int8_model_is_clean():
    graph = TG.Graph(BUILT.read_bytes())
    ops = [graph.code(i) for i in graph.live()]
    for code in (TG.TRANSPOSE, TG.PAD, TG.QUANTIZE, TG.DEQUANTIZE):
        assert code not in ops
    convs = [
        graph.g.operators[i]
        for i in graph.live()
        if graph.code(i) in (TG.CONV_2D, TG.DEPTHWISE_CONV_2D)
        and graph.g.operators[i].builtinOptions.strideH == 2
    ]
    assert len(convs) == 5
    assert all(op.builtinOptions.padding == S.Padding.SAME for op in convs)
    for i in graph.live():  # every activation between ops is int8 (biases int32)
        op = graph.g.operators[i]
        assert graph.dtype(int(op.outputs[0])) == TG.INT8
