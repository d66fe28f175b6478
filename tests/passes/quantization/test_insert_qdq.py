import numpy as np
import onnx_ir as ir
import pytest
from quant_testlib import build, gaussian_source, op_counts, run_quantize

from irpass.metrics import sqnr_db
from irpass.passes.quantization.rules import ORT, TENSORRT
from irpass.passes.quantization.validate import validate
from irpass.testing import run_ir

OPTIONS = "max_drop=none,never_slower=false"


def quantize_text(text: str, weights: list[str], shapes: dict, rules: str, extra: str = ""):
    model = build(text, weights)
    reference = model.clone()
    source = gaussian_source(shapes, batches=3)
    pass_ = run_quantize(model, source, f"rules={rules},{OPTIONS}{extra}")
    return reference, model, pass_, next(iter(source()))


def const(value: ir.Value) -> np.ndarray:
    return ir.convenience.get_const_tensor(value).numpy()


def readers(model: ir.Model, name: str) -> list[str]:
    values = {v.name: v for n in model.graph for v in n.outputs}
    return sorted(n.op_type for n, _ in values[name].uses())


CONV_RELU = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[N,4,8,8] x, float[8,4,3,3] w, float[8] b, float[8,8,1,1] w2) => (float[N,8,8,8] y) {
  c = Conv<pads=[1,1,1,1]>(x, w, b)
  r = Relu(c)
  y = Conv(r, w2)
}"""


def test_ort_absorbs_relu_into_the_output_grid_and_fuses():
    reference, model, pass_, feed = quantize_text(
        CONV_RELU, ["w", "b", "w2"], {"x": (2, 4, 8, 8)}, "ort"
    )
    assert "Relu" not in op_counts(model)
    assert pass_.stats["quantized_layers"] == 2
    relu_q = next(
        n for n in model.graph if n.op_type == "QuantizeLinear" and n.inputs[0].name == "c"
    )
    assert int(const(relu_q.inputs[2])) == 0  # uint8 zero point at the floor: Q does the ReLU
    assert readers(model, "c") == ["QuantizeLinear"]
    assert validate(model, ORT, runtime=True) == []
    expected, actual = run_ir(reference, feed)["y"], run_ir(model, feed)["y"]
    assert sqnr_db(expected, actual) > 30


def test_tensorrt_quantizes_inputs_only_and_keeps_relu():
    _, model, _, _ = quantize_text(CONV_RELU, ["w", "b", "w2"], {"x": (2, 4, 8, 8)}, "tensorrt")
    assert op_counts(model)["Relu"] == 1
    assert readers(model, "c") == ["Relu"]  # outputs stay float
    for q in (n for n in model.graph if n.op_type == "QuantizeLinear"):
        assert int(const(q.inputs[2])) == 0 and q.outputs[0].dtype == ir.DataType.INT8
    conv = next(n for n in model.graph if n.op_type == "Conv")
    assert conv.inputs[2].producer() is None  # TensorRT takes a float bias
    assert validate(model, TENSORRT) == []


RESIDUAL = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[N,4,6,6] x, float[4,4,3,3] w) => (float[N,4,6,6] y) {
  s = Relu(x)
  c = Conv<pads=[1,1,1,1]>(s, w)
  y = Add(c, s)
}"""


def test_tensorrt_puts_qdq_on_the_residual_input_of_add():
    _, model, _, _ = quantize_text(RESIDUAL, ["w"], {"x": (2, 4, 6, 6)}, "tensorrt")
    add = next(n for n in model.graph if n.op_type == "Add")
    conv_side, residual_side = add.inputs
    assert conv_side.producer().op_type == "Conv"
    assert residual_side.producer().op_type == "DequantizeLinear"


POOLED = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[N,3,8,8] x, float[4,3,3,3] w1, float[4,4,3,3] w2) => (float[N,4,4,4] y) {
  c = Conv<pads=[1,1,1,1]>(x, w1)
  r = Relu(c)
  p = MaxPool<kernel_shape=[2,2], strides=[2,2]>(r)
  y = Conv<pads=[1,1,1,1]>(p, w2)
}"""


def test_pass_through_op_reuses_its_input_grid():
    _, model, _, _ = quantize_text(POOLED, ["w1", "w2"], {"x": (2, 3, 8, 8)}, "ort")
    pool = next(n for n in model.graph if n.op_type == "MaxPool")
    before = pool.inputs[0].producer()
    after = next(n for n, _ in pool.outputs[0].uses())
    assert before.op_type == "DequantizeLinear" and after.op_type == "QuantizeLinear"
    for i in (1, 2):
        np.testing.assert_array_equal(const(before.inputs[i]), const(after.inputs[i]))
    assert validate(model, ORT, runtime=True) == []


def test_a_quantized_graph_output_keeps_its_name_and_float_type():
    text = """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[N,3,5,5] x, float[4,3,3,3] w) => (float[N,4,3,3] y) {
      y = Conv(x, w)
    }"""
    reference, model, _, feed = quantize_text(text, ["w"], {"x": (2, 3, 5, 5)}, "ort")
    output = model.graph.outputs[0]
    assert output.name == "y" and output.producer().op_type == "DequantizeLinear"
    assert output.dtype == ir.DataType.FLOAT
    assert sqnr_db(run_ir(reference, feed)["y"], run_ir(model, feed)["y"]) > 25


def test_final_gemm_returns_float_when_nothing_quantized_reads_it():
    text = """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[N,16] x, float[32,16] w1, float[32] b1, float[10,32] w2, float[10] b2)
      => (float[N,10] y) {
      h = Gemm<transB=1>(x, w1, b1)
      r = Relu(h)
      y = Gemm<transB=1>(r, w2, b2)
    }"""
    _, model, _, _ = quantize_text(text, ["w1", "b1", "w2", "b2"], {"x": (8, 16)}, "ort")
    last = [n for n in model.graph if n.op_type == "Gemm"][-1]
    assert last.outputs[0].name == "y" and last.outputs[0].is_graph_output()
    assert readers(model, "h") == ["QuantizeLinear"]  # the first one feeds the second in int8
    assert validate(model, ORT, runtime=True) == []


def test_a_shared_weight_is_stored_once_in_int8():
    text = """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[N,4,6,6] x, float[4,4,3,3] w) => (float[N,4,6,6] y) {
      a = Conv<pads=[1,1,1,1]>(x, w)
      y = Conv<pads=[1,1,1,1]>(a, w)
    }"""
    _, model, _, _ = quantize_text(text, ["w"], {"x": (2, 4, 6, 6)}, "ort")
    int8 = [v for v in model.graph.initializers.values() if v.dtype == ir.DataType.INT8]
    assert [v.name for v in int8 if v.shape == ir.Shape([4, 4, 3, 3])] == ["w_quantized"]
    assert "w" not in model.graph.initializers
    assert op_counts(model)["Conv"] == 2


@pytest.mark.parametrize("exclude", ["first", "Conv"])
def test_excluded_layers_stay_float(exclude):
    model = build(CONV_RELU, ["w", "b", "w2"])
    first = next(n for n in model.graph if n.op_type == "Conv")
    first.name = "first"
    pass_ = run_quantize(
        model, gaussian_source({"x": (2, 4, 8, 8)}), f"{OPTIONS},exclude=[{exclude}]"
    )
    assert first.inputs[1].producer() is None  # float weight
    assert pass_.details["plan"]["skipped"]["first"] == "excluded"


def test_a_weight_that_is_a_graph_input_is_left_float():
    text = """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[N,4,6,6] x, float[4,4,3,3] w, float[4,4,3,3] v) => (float[N,4,6,6] y) {
      a = Conv<pads=[1,1,1,1]>(x, w)
      y = Conv<pads=[1,1,1,1]>(a, v)
    }"""
    model = build(text, ["w"])  # v stays a graph input
    pass_ = run_quantize(model, gaussian_source({"x": (2, 4, 6, 6), "v": (4, 4, 3, 3)}), OPTIONS)
    assert pass_.details["plan"]["skipped"] == {"Conv_1": "the weight is not a constant"}
    assert pass_.stats["quantized_layers"] == 1
