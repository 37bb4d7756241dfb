"""torch.ao FX int8 post-training quantization of EfficientNet-Lite0, with the two fixes it needs.

Stock ``get_default_qconfig_mapping()`` ruins this network (MODELS.md §4.4):

1. FX fuses Conv+BN(+ReLU) but not ReLU6, so each conv's output observer sees the whole
   pre-activation range (stem: 0..51) and the [0, 6] that survives the clamp keeps ~15 levels.
   Fix: swap ReLU6 -> ReLU so Conv+BN+ReLU fuse, and give those fused convs a *fixed* output range
   of [0, 6] (scale 6/255, zero point 0).  The int8 saturation then *is* the ReLU6 clamp, as in
   TFLite and ONNX Runtime.
2. The TF-SAME ``nn.ZeroPad2d`` ops are unknown to the backend config, so they become float islands
   with a re-quantize after them.  Fix: register ``nn.ZeroPad2d`` as an op whose output shares its
   input's observer; quantized constant padding pads with the zero point, i.e. a real 0.

Weights: per-channel symmetric int8 (7-bit on ``onednn``, see ``_WEIGHT_7BIT``).  Activations:
full-range quint8, MinMax.  Engines: ``onednn`` (x86) and ``qnnpack`` (ARM).  ``x86``/``fbgemm``
need 7-bit activations (int16 accumulator overflow in the 1152-channel blocks) and are not offered.
"""

import copy
from collections.abc import Iterable

import torch
from torch import nn
from torch.ao.quantization import QConfig, QConfigMapping
from torch.ao.quantization.backend_config import (
    BackendConfig,
    BackendPatternConfig,
    DTypeConfig,
    ObservationType,
    get_onednn_backend_config,
    get_qnnpack_backend_config,
)
from torch.ao.quantization.observer import (
    FixedQParamsObserver,
    MinMaxObserver,
    PerChannelMinMaxObserver,
)
from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

ENGINES = ("onednn", "qnnpack")

_ACT = MinMaxObserver.with_args(
    dtype=torch.quint8,
    qscheme=torch.per_tensor_affine,
    quant_min=0,
    quant_max=255,
    reduce_range=False,
)
_WEIGHT = PerChannelMinMaxObserver.with_args(
    dtype=torch.qint8, qscheme=torch.per_channel_symmetric, quant_min=-127, quant_max=127, ch_axis=0
)
# onednn on x86 CPUs without VNNI (AVX2 only, e.g. many AMD EPYC) multiplies u8 activations by s8
# weights with vpmaddubsw, which sums pairs into a saturating int16: 255*127*2 overflows and the
# model silently degrades (top-1 wrong on 3 of 7 photos).  7-bit weights (|w| <= 63) keep every pair
# sum within int16 on every x86 CPU; VNNI CPUs lose nothing measurable.
_WEIGHT_7BIT = PerChannelMinMaxObserver.with_args(
    dtype=torch.qint8, qscheme=torch.per_channel_symmetric, quant_min=-63, quant_max=63, ch_axis=0
)
# Output of a fused conv+bn+relu whose float model clamps at 6: fixed [0, 6] range.
_RELU6_OUT = FixedQParamsObserver.with_args(
    scale=6.0 / 255.0, zero_point=0, dtype=torch.quint8, quant_min=0, quant_max=255
)


def qconfigs(engine: str) -> tuple[QConfig, QConfig]:
    """(global, fused conv+ReLU6) qconfigs for ``engine``: 7-bit weights on onednn (see above)."""
    weight = _WEIGHT_7BIT if engine == "onednn" else _WEIGHT
    return QConfig(activation=_ACT, weight=weight), QConfig(activation=_RELU6_OUT, weight=weight)


def _replace_relu6(model: nn.Module) -> list[str]:
    """Swap every nn.ReLU6 for nn.ReLU in place; return the names of the swapped modules."""
    swapped = []
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, nn.ReLU6):
                setattr(module, child_name, nn.ReLU())
                swapped.append(f"{name}.{child_name}" if name else child_name)
    return swapped


def _convs_before_relu6(model: nn.Module) -> list[str]:
    """Names of the convs followed by (bn+) ReLU6 in EfficientNetLite: all but the project convs."""
    names = []
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d) and not name.endswith("_project_conv"):
            names.append(name)
    return names


def backend_config(engine: str) -> BackendConfig:
    """The engine's stock BackendConfig plus nn.ZeroPad2d as a shared-qparams int8 op."""
    if engine == "onednn":
        config = get_onednn_backend_config()
    elif engine == "qnnpack":
        config = get_qnnpack_backend_config()
    else:
        raise ValueError(f"engine must be one of {ENGINES}, not {engine!r}")
    pad = (
        BackendPatternConfig(nn.ZeroPad2d)
        .set_observation_type(ObservationType.OUTPUT_SHARE_OBSERVER_WITH_INPUT)
        .set_dtype_configs([DTypeConfig(input_dtype=torch.quint8, output_dtype=torch.quint8)])
    )
    return config.set_backend_pattern_config(pad)


def quantize(
    model: nn.Module, calib_nchw: Iterable[torch.Tensor], engine: str
) -> torch.jit.ScriptModule:
    """Return a traced + frozen int8 TorchScript module for ``engine``.

    ``model`` is the float EfficientNetLite (left untouched); ``calib_nchw`` yields normalized
    (1,3,224,224) float tensors.  Load the result with
    ``torch.backends.quantized.engine = engine`` set first.
    """
    if engine not in torch.backends.quantized.supported_engines:
        raise RuntimeError(f"quantized engine {engine} not available in this torch build")
    torch.backends.quantized.engine = engine
    m = copy.deepcopy(model).eval()
    relu6_convs = _convs_before_relu6(m)
    swapped = _replace_relu6(m)
    m.eval()  # the new ReLU modules start in training mode; fusion wants all in eval
    if len(swapped) != len(relu6_convs):
        raise RuntimeError(
            f"{len(swapped)} ReLU6 vs {len(relu6_convs)} convs: unexpected architecture"
        )
    qconfig, qconfig_relu6 = qconfigs(engine)
    mapping = QConfigMapping().set_global(qconfig)
    for name in relu6_convs:
        mapping.set_module_name(name, qconfig_relu6)
    example = (torch.zeros(1, 3, 224, 224),)
    prepared = prepare_fx(m, mapping, example, backend_config=backend_config(engine))
    with torch.no_grad():
        for x in calib_nchw:
            prepared(x)
    quantized = convert_fx(prepared, backend_config=backend_config(engine))
    _lower_zero_pads(quantized)
    _check_no_float_islands(quantized)
    with torch.no_grad():
        traced = torch.jit.trace(quantized, example)
        frozen = torch.jit.freeze(traced.eval())
    return frozen


def _lower_zero_pads(gm: torch.fx.GraphModule) -> int:
    """Run each ZeroPad2d directly on the quantized tensor.

    convert_fx leaves ``dequantize -> ZeroPad2d -> quantize_per_tensor`` around the pads because its
    lowering pass only knows a fixed list of ops that work on quantized tensors.  The observer is
    shared (see ``backend_config``), so the re-quantize uses the input's own scale and zero
    point and can be dropped: ``nn.ZeroPad2d`` on a quantized tensor pads with the zero point,
    i.e. a real 0.
    Returns the number of pads rewritten.
    """
    modules = dict(gm.named_modules())
    count = 0
    for node in list(gm.graph.nodes):
        if node.op != "call_module" or not isinstance(modules.get(node.target), nn.ZeroPad2d):
            continue
        dq = node.args[0]
        users = list(node.users)
        if not (
            isinstance(dq, torch.fx.Node)
            and dq.op == "call_method"
            and dq.target == "dequantize"
            and len(users) == 1
            and users[0].op == "call_function"
            and users[0].target is torch.quantize_per_tensor
        ):
            raise RuntimeError(f"unexpected graph around {node.target}: {dq} -> {users}")
        q = users[0]
        node.args = (dq.args[0], *node.args[1:])
        q.replace_all_uses_with(node)
        q_inputs = [a for a in q.args if isinstance(a, torch.fx.Node) and a is not node]
        gm.graph.erase_node(q)
        for a in q_inputs:
            if not a.users:
                gm.graph.erase_node(a)
        if not dq.users:
            gm.graph.erase_node(dq)
        count += 1
    gm.graph.eliminate_dead_code()
    gm.graph.lint()
    gm.recompile()
    return count


def _check_no_float_islands(gm: torch.fx.GraphModule) -> None:
    """Fail if a conv or linear stayed float (a silent FX fallback ruins speed and accuracy)."""
    float_ops = []
    modules = dict(gm.named_modules())
    for node in gm.graph.nodes:
        if node.op == "call_module":
            mod = modules[node.target]
            if type(mod) in (nn.Conv2d, nn.Linear, nn.BatchNorm2d):
                float_ops.append(node.target)
    n_quant = sum(
        1
        for n in gm.graph.nodes
        if n.op == "call_function" and "quantize_per_tensor" in str(n.target)
    )
    n_deq = sum(1 for n in gm.graph.nodes if n.op == "call_method" and n.target == "dequantize")
    if float_ops:
        raise RuntimeError(f"FX left float modules: {float_ops[:5]}...")
    if n_quant != 1 or n_deq != 1:
        raise RuntimeError(f"expected one quantize and one dequantize, got {n_quant} and {n_deq}")
