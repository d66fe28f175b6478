import numpy as np
import onnx_ir as ir
import pytest
from quant_testlib import build, op_counts

from irpass.metrics import cosine
from irpass.passes.quantization.layer_forms import apply_forms
from irpass.passes.quantization.rules import ORT
from irpass.passes.quantization.validate import validate
from irpass.testing import run_ir

MLP = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[N,64] x, float[32,64] w1, float[32] b1, float[32,16] w2) => (float[N,16] y) {
  a = Gemm<transB=1>(x, w1, b1)
  r = Relu(a)
  y = MatMul(r, w2)
}"""


def _mlp() -> ir.Model:
    model = build(MLP, ["w1", "b1", "w2"])
    for node, name in zip(model.graph, ("gemm", "relu", "matmul"), strict=True):
        node.name = name
    return model


def _feed() -> dict[str, np.ndarray]:
    return {"x": np.random.default_rng(3).standard_normal((8, 64)).astype(np.float32)}


def test_dynamic_form_is_what_onnxruntime_fuses_and_stays_close_to_float():
    model = _mlp()
    reference = run_ir(model.clone(), _feed())["y"]
    left = apply_forms(model, {"gemm": "dynamic", "matmul": "dynamic"})
    assert left == {}
    assert op_counts(model) == {
        "DynamicQuantizeLinear": 2,
        "MatMulInteger": 2,
        "Cast": 2,
        "Mul": 4,
        "Add": 1,  # the Gemm's bias; the MatMul had none
        "Relu": 1,
    }
    assert set(model.graph.initializers).isdisjoint({"w1", "w2"})  # float weights gone
    assert [v.name for v in model.graph.outputs] == ["y"]
    # the runtime check fails on a MatMulInteger ORT left unfused
    assert validate(model, ORT, runtime=True) == []
    assert cosine(reference, run_ir(model, _feed())["y"]) > 0.999


def test_int8w_form_is_matmulnbits_and_stays_close_to_float():
    model = _mlp()
    reference = run_ir(model.clone(), _feed())["y"]
    assert apply_forms(model, {"gemm": "int8w"}) == {}
    assert op_counts(model)["MatMulNBits"] == 1 and op_counts(model)["MatMul"] == 1
    assert model.opset_imports["com.microsoft"] == 1
    assert cosine(reference, run_ir(model, _feed())["y"]) > 0.999


@pytest.mark.parametrize(
    ("change", "form", "reason"),
    [
        ("transA", "dynamic", "transA"),
        ("alpha", "dynamic", "alpha"),
        ("small_k", "int8w", "smaller than one block"),
    ],
)
def test_layers_a_form_cannot_express_are_left_as_they_were(change, form, reason):
    text = MLP
    if change == "transA":
        text = text.replace("float[N,64] x", "float[64,N] x").replace(
            "Gemm<transB=1>", "Gemm<transA=1, transB=1>"
        )
    elif change == "alpha":
        text = text.replace("Gemm<transB=1>", "Gemm<transB=1, alpha=2.0>")
    else:
        text = text.replace("float[N,64] x", "float[N,16] x").replace(
            "float[32,64] w1", "float[32,16] w1"
        )
    model = build(text, ["w1", "b1", "w2"])
    model.graph.node(0).name = "gemm"
    before = op_counts(model)
    left = apply_forms(model, {"gemm": form})
    assert reason in left["gemm"]
    assert op_counts(model) == before and "w1" in model.graph.initializers


def test_quantized_or_missing_layers_are_not_rewritten():
    model = _mlp()
    left = apply_forms(model, {"relu": "dynamic", "nowhere": "dynamic"})
    assert set(left) == {"relu", "nowhere"}
    assert op_counts(model) == {"Gemm": 1, "Relu": 1, "MatMul": 1}
