import numpy as np
import onnx_ir as ir
import pytest
from quant_testlib import build, gaussian_source, run_quantize

from irpass.passes.quantization.rules import NNAPI, ORT, ORT_U8S8, TENSORRT, get_rules
from irpass.passes.quantization.validate import validate
from irpass.testing import run_ir
from irpass.verify import check_structure

NET = """
<ir_version: 8, opset_import: ["" : 17]>
net (float[N,3,8,8] x, float[8,3,3,3] w1, float[8] b1, float[8,8,3,3] w2, float[8] b2,
     float[5,8] wf, float[5] bf) => (float[N,5] probs) {
  c1 = Conv<pads=[1,1,1,1]>(x, w1, b1)
  r1 = Relu(c1)
  p1 = MaxPool<kernel_shape=[2,2], strides=[2,2]>(r1)
  c2 = Conv<pads=[1,1,1,1]>(p1, w2, b2)
  a = Add(c2, p1)
  r2 = Relu(a)
  g = GlobalAveragePool(r2)
  f = Flatten(g)
  logits = Gemm<transB=1>(f, wf, bf)
  probs = Softmax<axis=1>(logits)
}"""
WEIGHTS = ["w1", "b1", "w2", "b2", "wf", "bf"]
SOURCE = gaussian_source({"x": (4, 3, 8, 8)}, batches=3)


def quantized(rules: str) -> ir.Model:
    model = build(NET, WEIGHTS)
    run_quantize(model, SOURCE, f"rules={rules},max_drop=none,never_slower=false")
    return model


def messages(model: ir.Model, rules) -> list[str]:
    return [v.message for v in validate(model, rules, runtime=True)]


def node(model: ir.Model, op_type: str, index: int = 0) -> ir.Node:
    return [n for n in model.graph if n.op_type == op_type][index]


def const(value: ir.Value) -> np.ndarray:
    return ir.convenience.get_const_tensor(value).numpy()


def set_const(value: ir.Value, array: np.ndarray) -> None:
    value.const_value = ir.tensor(array, name=value.name)


@pytest.mark.parametrize("rules", ["tensorrt", "ort", "nnapi"])
def test_irpass_output_passes_its_validator_and_runs(rules):
    model = quantized(rules)
    assert validate(model, get_rules(rules), runtime=True) == []
    check_structure(model)
    run_ir(model, next(iter(SOURCE())))


@pytest.mark.parametrize(
    ("made_for", "checked_against", "expected"),
    [
        ("ort", "tensorrt", "activation type uint8"),
        ("ort", "nnapi", "per-tensor Gemm weights"),
        ("tensorrt", "ort", "output not read by exactly one QuantizeLinear"),
        ("tensorrt", "nnapi", "activation type int8"),
        ("nnapi", "tensorrt", "zero point"),
    ],
)
def test_a_model_for_another_runtime_fails(made_for, checked_against, expected):
    found = messages(quantized(made_for), get_rules(checked_against))
    assert any(expected in m for m in found), found


def test_tensorrt_rejects_a_non_zero_zero_point_and_qlinear_ops():
    model = quantized("tensorrt")
    q = node(model, "QuantizeLinear")
    set_const(q.inputs[2], np.array(3, dtype=np.int8))
    model.graph.append(ir.node("QLinearConv", [], name="bad", num_outputs=1))
    found = messages(model, TENSORRT)
    assert any("!= 0 (tensorrt is symmetric)" in m for m in found)
    assert any("QLinearConv is rejected" in m for m in found)


def test_wrong_per_channel_axis_is_reported():
    model = quantized("tensorrt")
    conv = node(model, "Conv")
    dq = conv.inputs[1].producer()
    dq.attributes["axis"] = ir.AttrInt64("axis", 1)
    assert any("per-channel weight axis 1" in m for m in messages(model, TENSORRT))


def test_float_data_input_of_a_quantized_conv_is_reported():
    model = quantized("tensorrt")
    conv = node(model, "Conv", 1)
    dq = conv.inputs[0].producer()
    conv.replace_input_with(0, dq.inputs[0].producer().inputs[0])  # skip the Q/DQ pair
    assert any("float data input" in m for m in messages(model, TENSORRT))


def test_ort_float_bias_and_wrong_bias_scale_are_reported():
    model = quantized("ort")
    first, second = node(model, "Conv", 0), node(model, "Conv", 1)
    bias_dq = first.inputs[2].producer()
    first.replace_input_with(2, ir.val("free_bias", ir.DataType.FLOAT, [8]))
    model.graph.inputs.append(first.inputs[2])
    scale = second.inputs[2].producer().inputs[1]
    set_const(scale, const(scale) * 2)
    found = messages(model, ORT_U8S8)
    assert any("bias is not int32" in m for m in found)
    assert any("bias scale != input scale * weight scale" in m for m in found)
    assert bias_dq is not None


def test_ort_runtime_check_finds_a_conv_onnx_runtime_cannot_fuse():
    model = quantized("ort")
    conv = node(model, "Conv", 0)
    model.graph.outputs.append(conv.outputs[0])  # a second reader breaks the node unit
    found = messages(model, ORT_U8S8)
    assert any("left this quantized op unfused" in m for m in found), found


def test_nnapi_softmax_grid_must_be_one_over_256():
    model = quantized("nnapi")
    softmax = node(model, "Softmax")
    q = next(u for u, _ in softmax.outputs[0].uses() if u.op_type == "QuantizeLinear")
    assert float(const(q.inputs[1])) == pytest.approx(1 / 256) and int(const(q.inputs[2])) == 0
    set_const(q.inputs[1], np.array(0.01, dtype=np.float32))
    assert any("scale 0.00390625" in m for m in messages(model, NNAPI))


def test_old_opset_and_constant_free_scales_are_reported():
    model = quantized("ort")
    model.opset_imports[""] = 11
    q = node(model, "QuantizeLinear")
    free = ir.val("free_scale", ir.DataType.FLOAT, [])
    model.graph.inputs.append(free)
    q.replace_input_with(1, free)
    found = messages(model, ORT)
    assert any("opset 11 < 13" in m for m in found)
    assert any("scale is not a constant" in m for m in found)
