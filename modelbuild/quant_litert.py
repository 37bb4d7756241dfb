"""TFLite export through litert-torch (no TensorFlow): fp32, and full-int8 PT2E (patched quantizer).

The stock ``litert_torch`` PT2E quantizer has the same trap as torch.ao FX (MODELS.md §4.5):

* it annotates conv+relu but not conv+hardtanh (ReLU6).  ``hardtanh`` is only a "shared qparams"
  op, so the observer sits on the *conv output*, sees the whole pre-activation range and the [0, 6]
  that survives the clamp keeps few levels.  Fix: a conv+hardtanh annotator that puts the conv's
  output observer after the hardtanh (the converter fuses the clamp into the conv as RELU6);
* the TF-SAME pads (``aten.pad``) are not annotated, so each one is a dequantize -> float PAD ->
  quantize island with its own, different scale.  Fix: annotate them as shared-qparams ops (output
  shares its input's observer; padding with the zero point is a real 0).

The resulting model is full-integer: int8 NHWC input (scale 1/128, zero point -1 for inputs
(p-127)/128, i.e. ``q = p - 128``) and int8 output (logits).
"""

from collections.abc import Iterable

import litert_torch
import torch
from litert_torch.quantize import pt2e_quantizer_utils as qutils
from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config
from litert_torch.quantize.quant_config import QuantConfig
from torch import nn
from torch.fx import Node
from torchao.quantization.pt2e import move_exported_model_to_eval
from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
from torchao.quantization.pt2e.quantizer import (
    FixedQParamsQuantizationSpec,
    QuantizationAnnotation,
    SharedQuantizationSpec,
)

_CONV_OPS = (
    torch.ops.aten.conv1d.default,
    torch.ops.aten.conv2d.default,
    torch.ops.aten.convolution.default,
)
_HARDTANH_OPS = (torch.ops.aten.hardtanh.default, torch.ops.aten.hardtanh_.default)
_PAD_OPS = (torch.ops.aten.pad.default, torch.ops.aten.constant_pad_nd.default)


def _annotated(node: Node) -> bool:
    ann = node.meta.get("quantization_annotation")
    return ann is not None and ann._annotated


def _is_zero_pad(node) -> bool:
    if not isinstance(node, Node) or node.op != "call_function" or node.target not in _PAD_OPS:
        return False
    if node.target is torch.ops.aten.constant_pad_nd.default:
        mode, value = "constant", (node.args[2] if len(node.args) > 2 else 0.0)
    else:
        mode = node.args[2] if len(node.args) > 2 else node.kwargs.get("mode", "constant")
        value = node.args[3] if len(node.args) > 3 else node.kwargs.get("value", 0.0)
    return mode == "constant" and (value or 0.0) == 0.0


def _comes_from_graph_input(node: Node) -> bool:
    """True for a placeholder, or layout-only ops (permute/view) applied to one."""
    while (
        isinstance(node, Node)
        and node.op == "call_function"
        and node.target
        in (
            torch.ops.aten.permute.default,
            torch.ops.aten.permute_copy.default,
        )
    ):
        node = node.args[0]
    return isinstance(node, Node) and node.op == "placeholder"


class _Annotator:
    """conv+hardtanh and zero-pad annotation for one QuantizationConfig."""

    def __init__(self, config: qutils.QuantizationConfig, input_qspec=None):
        self.config = config
        self.input_qspec = input_qspec  # for the edge that quantizes the graph input, or None

    def _act_spec_for(self, prev: Node):
        ann = prev.meta.get("quantization_annotation")
        if ann is not None and ann.output_qspec is not None:
            return SharedQuantizationSpec(prev)
        if self.input_qspec is not None and _comes_from_graph_input(prev):
            return self.input_qspec
        return qutils.get_input_act_qspec(self.config)

    def conv_hardtanh(self, gm: torch.fx.GraphModule, filter_fn=None) -> int:
        """conv -> hardtanh: quantize the conv's inputs, observe the output *after* the clamp.

        When the conv's input is a zero pad, the activation is quantized *before* the pad and
        nothing sits between pad and conv, so the converter folds the asymmetric pad into the
        conv's SAME padding as it does for the float model.
        """
        count = 0
        for node in gm.graph.nodes:
            if node.op != "call_function" or node.target not in _HARDTANH_OPS:
                continue
            conv = node.args[0]
            if (
                not isinstance(conv, Node)
                or conv.op != "call_function"
                or conv.target not in _CONV_OPS
            ):
                continue
            if len(conv.users) != 1:
                continue
            input_act, weight = conv.args[0], conv.args[1]
            pad = input_act if _is_zero_pad(input_act) and len(input_act.users) == 1 else None
            partition = [node, conv, weight] + ([pad] if pad is not None else [])
            bias = conv.args[2] if len(conv.args) > 2 else None
            if isinstance(bias, Node):
                partition.append(bias)
            if any(_annotated(n) for n in partition):
                continue
            if filter_fn and not all(filter_fn(n) for n in partition):
                continue
            qspec_map = {weight: qutils.get_weight_qspec(self.config)}
            if isinstance(bias, Node):
                qspec_map[bias] = qutils.get_bias_qspec(self.config)
            if pad is None:
                qspec_map[input_act] = self._act_spec_for(input_act)
            else:
                prev = pad.args[0]
                pad.meta["quantization_annotation"] = QuantizationAnnotation(
                    input_qspec_map={prev: self._act_spec_for(prev)}, _annotated=True
                )
            conv.meta["quantization_annotation"] = QuantizationAnnotation(
                input_qspec_map=qspec_map, _annotated=True
            )
            node.meta["quantization_annotation"] = QuantizationAnnotation(
                output_qspec=qutils.get_output_act_qspec(self.config), _annotated=True
            )
            count += 1
        return count

    def pads(self, gm: torch.fx.GraphModule) -> int:
        """Any remaining zero pad runs in int8 and shares its input's quantization parameters."""
        count = 0
        for node in gm.graph.nodes:
            if not _is_zero_pad(node) or _annotated(node):
                continue
            prev = node.args[0]
            if not isinstance(prev, Node):
                continue
            node.meta["quantization_annotation"] = QuantizationAnnotation(
                input_qspec_map={prev: self._act_spec_for(prev)},
                output_qspec=SharedQuantizationSpec((prev, node)),
                _annotated=True,
            )
            count += 1
        return count


class PatchedPT2EQuantizer(PT2EQuantizer):
    """litert-torch's PT2EQuantizer plus conv+hardtanh fusion and int8 pads (global config only).

    ``input_scale``/``input_zero_point`` fix the quantization of the graph input; for inputs
    (p - 127) / 128 with p in 0..255, scale 1/128 and zero point -1 make ``q = p - 128`` exact.
    """

    def __init__(self, input_scale: float | None = None, input_zero_point: int = 0):
        super().__init__()
        self.input_qspec = None
        if input_scale is not None:
            self.input_qspec = FixedQParamsQuantizationSpec(
                dtype=torch.int8,
                scale=input_scale,
                zero_point=input_zero_point,
                quant_min=-128,
                quant_max=127,
                qscheme=torch.per_tensor_affine,
            )

    def _annotate_all_static_patterns(self, model, quantization_config, filter_fn=None):
        if quantization_config is None:
            return model
        annotator = _Annotator(quantization_config, self.input_qspec)
        if not quantization_config.is_qat:
            annotator.conv_hardtanh(model, filter_fn)
        super()._annotate_all_static_patterns(model, quantization_config, filter_fn)
        annotator.pads(model)
        return model


def make_quantizer(patched: bool = True, input_scale=None, input_zero_point=0) -> PT2EQuantizer:
    q = PatchedPT2EQuantizer(input_scale, input_zero_point) if patched else PT2EQuantizer()
    return q.set_global(get_symmetric_quantization_config(is_per_channel=True))


def convert_fp32(model_nhwc: nn.Module, path: str) -> None:
    """Float TFLite with NHWC float input (litert-torch; the transposes cancel out)."""
    sample = (torch.zeros(1, 224, 224, 3),)
    litert_torch.convert(model_nhwc.eval(), sample).export(path)


def convert_int8(
    model_nhwc: nn.Module,
    calib_nhwc: Iterable[torch.Tensor],
    path: str,
    patched: bool = True,
    input_scale: float | None = 1.0 / 128.0,
    input_zero_point: int = -1,
) -> None:
    """Full-integer TFLite (int8 in/out) by PT2E static quantization with ``calib_nhwc`` batches."""
    sample = (torch.zeros(1, 224, 224, 3),)
    exported = torch.export.export(model_nhwc.eval(), sample).module()
    quantizer = make_quantizer(patched, input_scale if patched else None, input_zero_point)
    prepared = prepare_pt2e(exported, quantizer)
    with torch.no_grad():
        for x in calib_nhwc:
            prepared(x)
    converted = move_exported_model_to_eval(convert_pt2e(prepared, fold_quantize=False))
    edge = litert_torch.convert(
        converted, sample, quant_config=QuantConfig(pt2e_quantizer=quantizer)
    )
    edge.export(path)
