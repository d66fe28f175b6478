import numpy as np
import onnx_ir as ir
import pytest
from quant_testlib import build, gaussian_source, run_quantize

from irpass.passes.quantization.rules import ORT, get_rules
from irpass.passes.quantization.validate import validate

OPTIONS = "max_drop=none,never_slower=false,bias_correction=false"

#: pointwise -> depthwise 3x3 -> pointwise, the MobileNet block
SEPARABLE = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[N,4,8,8] x, float[16,4,1,1] w1, float[16] b1, float[16,1,3,3] dw, float[16] b2,
   float[8,16,1,1] w3) => (float[N,8,8,8] y) {
  a = Conv(x, w1, b1)
  r = Relu(a)
  d = Conv<group=16, pads=[1,1,1,1]>(r, dw, b2)
  s = Relu(d)
  y = Conv(s, w3)
}"""


def _scale_of_weight(model: ir.Model, weight_prefix: str) -> np.ndarray:
    for node in model.graph:
        source = node.inputs[0] if node.inputs else None
        if (
            node.op_type == "DequantizeLinear"
            and source is not None
            and (source.name or "").startswith(weight_prefix)
        ):
            return node.inputs[1].const_value.numpy()  # type: ignore[union-attr]
    raise AssertionError(f"no DequantizeLinear of {weight_prefix}")


def _separable(spread: float) -> ir.Model:
    """The block with the depthwise channels' weight ranges ``spread`` apart (1: alike)."""
    model = build(SEPARABLE, ["w1", "b1", "dw", "b2", "w3"])
    dw = model.graph.initializers["dw"]
    rng = np.random.default_rng(1)
    signs = np.where(rng.random((16, 1, 3, 3)) < 0.5, -1.0, 1.0)
    channel = np.geomspace(1.0, spread, 16).reshape(16, 1, 1, 1)
    values = (signs * rng.uniform(0.5, 1.0, (16, 1, 3, 3)) * channel * 0.3).astype(np.float32)
    dw.const_value = ir.tensor(values, name="dw")
    # the next layer undoes the spread, so every channel matters as much to the output
    w3 = model.graph.initializers["w3"]
    compensated = w3.const_value.numpy() / channel.reshape(1, 16, 1, 1)
    w3.const_value = ir.tensor(compensated.astype(np.float32), name="w3")
    return model


def test_depthwise_weights_with_alike_channels_take_one_scale():
    model = _separable(1.0)
    pass_ = run_quantize(model, gaussian_source({"x": (8, 4, 8, 8)}), OPTIONS)
    assert pass_.stats["per_tensor_depthwise"] == 1
    assert _scale_of_weight(model, "dw").size == 1
    assert _scale_of_weight(model, "w1").size == 16  # pointwise layers keep per-channel grids
    assert validate(model, ORT, runtime=True) == []


def test_depthwise_weights_with_channels_far_apart_keep_per_channel_scales():
    # channel ranges 100x apart: one scale rounds the small channels to a few levels
    model = _separable(100.0)
    pass_ = run_quantize(model, gaussian_source({"x": (8, 4, 8, 8)}), OPTIONS)
    assert pass_.stats["per_tensor_depthwise"] == 0
    assert _scale_of_weight(model, "dw").size == 16
    details = pass_.details["depthwise_per_tensor"]
    assert details["chosen"] == []
    assert min(details["output_sqnr_db"].values()) < details["output_sqnr_db"]["0"]


def test_depthwise_per_tensor_off_keeps_per_channel_scales():
    model = _separable(1.0)
    pass_ = run_quantize(
        model, gaussian_source({"x": (8, 4, 8, 8)}), OPTIONS + ",depthwise_per_tensor=off"
    )
    assert "per_tensor_depthwise" not in pass_.stats
    assert _scale_of_weight(model, "dw").size == 16


@pytest.mark.parametrize("rules", ["tensorrt", "ort", "nnapi"])
def test_per_tensor_depthwise_models_pass_the_rule_set_validator(rules):
    model = _separable(1.0)
    pass_ = run_quantize(model, gaussian_source({"x": (8, 4, 8, 8)}), f"{OPTIONS},rules={rules}")
    assert pass_.stats["per_tensor_depthwise"] == 1
    assert validate(model, get_rules(rules), runtime=rules != "tensorrt") == []


def test_models_without_depthwise_convs_are_not_measured():
    model = _separable(1.0)
    for node in model.graph:  # make the middle Conv a dense one
        if node.op_type == "Conv" and "group" in node.attributes:
            del node.attributes["group"]
            dense = np.ones((16, 16, 3, 3), dtype=np.float32) * 0.01
            model.graph.initializers["dw"].const_value = ir.tensor(dense, name="dw")
            model.graph.initializers["dw"].shape = ir.Shape(dense.shape)
    pass_ = run_quantize(model, gaussian_source({"x": (8, 4, 8, 8)}), OPTIONS)
    assert "per_tensor_depthwise" not in pass_.stats
    assert "depthwise_per_tensor" not in pass_.details
