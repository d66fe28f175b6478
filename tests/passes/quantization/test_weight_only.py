import numpy as np
import onnx_ir as ir
import pytest
from quant_testlib import build, op_counts

from irpass.context import PassContext
from irpass.passes.quantization.quantize import QuantizePass
from irpass.passes.quantization.weight_only import block_quantize
from irpass.testing import run_ir
from irpass.verify import check_structure

MLP = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[N,S,80] x, float[80,48] w1, float[32,48] w2, float[32] b2) => (float[N,S,32] y) {
  h = MatMul(x, w1)
  r = Relu(h)
  f = Reshape(r, shape)
  g2 = Gemm<transB=1>(f, w2, b2)
  y = Reshape(g2, out_shape)
}"""


def mlp() -> ir.Model:
    text = MLP.replace(
        "f = Reshape(r, shape)", "shape = Constant<value_ints=[-1, 48]>()\n  f = Reshape(r, shape)"
    )
    text = text.replace(
        "y = Reshape(g2, out_shape)",
        "out_shape = Constant<value_ints=[2, -1, 32]>()\n  y = Reshape(g2, out_shape)",
    )
    return build(text, ["w1", "w2", "b2"])


def expected_output(model: ir.Model, x: np.ndarray, bits: int, block: int) -> np.ndarray:
    w1 = model.graph.initializers["w1"].const_value.numpy()
    w2 = model.graph.initializers["w2"].const_value.numpy()
    b2 = model.graph.initializers["b2"].const_value.numpy()
    d1 = block_quantize(w1, bits, block).dequantize(w1.shape[0])
    d2 = block_quantize(w2.T, bits, block).dequantize(w2.shape[1])
    h = np.maximum(x @ d1, 0).reshape(-1, 48)
    return (h @ d2 + b2).reshape(2, -1, 32)


def run_pass(model: ir.Model, options: str) -> QuantizePass:
    from irpass.pipeline import parse_pipeline, resolve_options

    step = parse_pipeline(f"quantize({options})")[0]
    pass_ = QuantizePass(resolve_options("quantize", QuantizePass.Options, step.options_dict()))
    pass_(model)
    return pass_


@pytest.mark.parametrize("bits", [4, 8])
def test_block_quantization_error_is_within_half_a_step(bits):
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((70, 5)).astype(np.float32)
    quantized = block_quantize(weight, bits, 32)
    qmax = 2 ** (bits - 1) - 1
    assert quantized.codes.shape == (96, 5) and np.abs(quantized.codes).max() <= qmax
    steps = np.repeat(quantized.scales, 32, axis=0)[:70]
    assert np.all(np.abs(quantized.dequantize(70) - weight) <= steps / 2 + 1e-7)


@pytest.mark.parametrize("mode,bits", [("int4w", 4), ("int8w", 8)])
def test_ort_rules_use_matmulnbits_that_compute_with_the_quantized_weights(mode, bits):
    model = mlp()
    reference = model.clone()
    pass_ = run_pass(model, f"mode={mode},rules=ort,block_size=16")
    assert op_counts(model)["MatMulNBits"] == 2 and "Gemm" not in op_counts(model)
    assert pass_.stats[f"weights_int{bits}"] == 2
    check_structure(model)
    x = np.random.default_rng(1).standard_normal((2, 3, 80)).astype(np.float32)
    got = run_ir(model, {"x": x})["y"]
    np.testing.assert_allclose(got, expected_output(reference, x, bits, 16), rtol=1e-4, atol=1e-4)


def test_other_rules_get_blocked_dequantize_linear_at_opset_21():
    model = mlp()
    reference = model.clone()
    run_pass(model, "mode=int4w,rules=tensorrt,block_size=16")
    assert model.opset_imports[""] == 21
    dqs = [n for n in model.graph if n.op_type == "DequantizeLinear"]
    assert len(dqs) == 2 and all(n.attributes["block_size"].as_int() == 16 for n in dqs)
    assert {n.inputs[0].dtype for n in dqs} == {ir.DataType.INT4}
    x = np.random.default_rng(2).standard_normal((2, 3, 80)).astype(np.float32)
    got = run_ir(model, {"x": x})["y"]
    np.testing.assert_allclose(got, expected_output(reference, x, 4, 16), rtol=1e-4, atol=1e-4)


def test_weights_smaller_than_a_block_stay_float_and_no_data_is_needed():
    model = mlp()
    pass_ = QuantizePass(QuantizePass.Options(mode="int8w", block_size=64), PassContext())
    result = pass_(model)
    assert result.modified and pass_.stats["skipped_small"] == 1  # Gemm's K = 48 < 64
    assert op_counts(model)["Gemm"] == 1 and op_counts(model)["MatMulNBits"] == 1


def test_nothing_to_quantize_leaves_the_model_as_it_was():
    # found by the fuzzer (irpass.fuzz): nodes were named and unused initializers of the
    # input deleted although the pass reported no change
    model = mlp()
    model.graph.initializers["spare"] = ir.Value(
        name="spare", const_value=ir.tensor(np.ones(3, np.float32), name="spare")
    )
    names = [node.name for node in model.graph]
    pass_ = QuantizePass(QuantizePass.Options(mode="int8w", block_size=128), PassContext())
    assert pass_(model).modified is False
    assert [node.name for node in model.graph] == names
    assert "spare" in model.graph.initializers


def test_a_weight_with_a_default_value_stays_an_input():
    model = mlp()
    model.graph.inputs.append(model.graph.initializers["w1"])  # overridable (IR >= 4)
    pass_ = QuantizePass(QuantizePass.Options(mode="int8w", block_size=16), PassContext())
    assert pass_(model).modified is True
    assert op_counts(model)["MatMul"] == 1 and op_counts(model)["MatMulNBits"] == 1
    assert model.graph.inputs[-1].name == "w1" and "w1" in model.graph.initializers
