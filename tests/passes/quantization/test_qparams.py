import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from irpass.passes.quantization.qparams import (
    INT8,
    UINT8,
    activation_params,
    bias_params,
    dequantize,
    quantize,
    weight_params,
)
from irpass.testing import model_from_text, run_ir

QDQ = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[K] x, float s, {zt} z) => (float[K] y) {{
  q = QuantizeLinear(x, s, z)
  y = DequantizeLinear(q, s, z)
}}"""


@settings(max_examples=40, deadline=None)
@given(
    st.floats(-50, 0, allow_nan=False),
    st.floats(0, 50, allow_nan=False),
    st.booleans(),
)
def test_numpy_quantization_matches_onnx_runtime(lo, hi, unsigned):
    qt = UINT8 if unsigned else INT8
    params = activation_params(lo, hi, qt, symmetric=False)
    x = np.linspace(lo - 1, hi + 1, 101, dtype=np.float32)
    model = model_from_text(QDQ.format(zt=qt.name))
    ours = dequantize(quantize(x, params), params)
    theirs = run_ir(model, {"x": x, "s": params.scale, "z": params.zero_point})["y"]
    np.testing.assert_array_equal(ours, theirs)


def test_asymmetric_grid_puts_zero_exactly_on_a_code():
    params = activation_params(0.0, 6.0, UINT8, symmetric=False)
    assert int(params.zero_point) == 0  # ReLU output: the floor is the lowest code
    params = activation_params(-1.0, 3.0, INT8, symmetric=False)
    assert dequantize(quantize(np.zeros(1), params), params)[0] == 0.0
    low, high = params.representable()  # zero on a code shifts the grid by under one step
    step = float(params.scale)
    assert abs(low + 1.0) < step and abs(high - 3.0) < step and high - low == pytest.approx(4.0)


def test_symmetric_grid_has_zero_point_zero_and_restricted_range():
    params = activation_params(-2.0, 1.0, INT8, symmetric=True)
    assert int(params.zero_point) == 0 and float(params.scale) == pytest.approx(2.0 / 127)
    assert quantize(np.array([-2.0]), params)[0] == -127


def test_per_channel_weights_and_int32_bias():
    w = np.array([[1.0, -2.0], [0.5, 0.25]], dtype=np.float32)
    params = weight_params(w, INT8, axis=0)
    np.testing.assert_allclose(params.scale, [2.0 / 127, 0.5 / 127])
    np.testing.assert_array_equal(quantize(w, params), [[64, -127], [127, 64]])
    raised = weight_params(w, INT8, axis=0, min_scale=np.array([0.0, 1.0]))
    assert raised.scale[1] == 1.0  # a bias too large for int32 raises the channel's scale
    bias = bias_params(np.float32(0.1), params.scale)
    np.testing.assert_allclose(bias.scale, 0.1 * params.scale, rtol=1e-6)
    assert bias.qtype.name == "int32" and not np.any(bias.zero_point)
