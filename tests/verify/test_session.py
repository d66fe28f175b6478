from __future__ import annotations

import ml_dtypes
import numpy as np
import onnx_ir as ir
import onnxruntime as ort
import pytest

from irpass.errors import VerificationError
from irpass.testing import (
    assert_unchanged,
    inputs_to_random_initializers,
    model_from_text,
    serialized,
)
from irpass.verify import check_structure, make_session, run_model

TEXT = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[2, 64] x, float[64, 64] w, float[64, 64] unused, float[64] shadow) => (float[2, 64] y) {
    h = MatMul (x, w)
    y = Add (h, shadow)
}
"""


def test_session_shares_weight_buffers_and_matches_a_serialized_copy() -> None:
    model = inputs_to_random_initializers(model_from_text(TEXT), ["w", "unused"], seed=0)
    # an overridable initializer (input with a default) keeps working as an input
    shadow = next(v for v in model.graph.inputs if v.name == "shadow")
    shadow.const_value = ir.tensor(np.arange(64, dtype=np.float32), name="shadow")
    model.graph.register_initializer(shadow)
    session = make_session(model)
    assert session._irpass_buffers  # the large used weight reached ORT as a shared buffer
    w = model.graph.initializers["w"].const_value
    assert any(np.shares_memory(a, w.numpy()) for a in session._irpass_buffers)
    x = np.random.default_rng(1).standard_normal((2, 64)).astype(np.float32)
    copy = ort.InferenceSession(ir.to_proto(model).SerializeToString())
    (expected,) = copy.run(None, {"x": x})
    np.testing.assert_array_equal(run_model(session, {"x": x})["y"], expected)
    # the model is left exactly as it was
    assert model.graph.initializers["w"].const_value is w


def test_checker_runs_without_the_large_weights_and_leaves_the_model_as_it_was() -> None:
    model = inputs_to_random_initializers(model_from_text(TEXT), ["w", "unused"], seed=0)
    before = serialized(model)
    check_structure(model)  # w and unused (16 KB each) reach the checker as typed inputs
    assert_unchanged(before, model)
    relu = ir.node("Relu", [model.graph.initializers["w"]], num_outputs=1)
    relu.outputs[0].name = "h"  # a second producer of h: the checker must still see it
    model.graph.append(relu)
    with pytest.raises(VerificationError, match="checker"):
        check_structure(model)


NARROW = """
<ir_version: 13, opset_import: ["" : 25]>
g (bfloat16[3] a, int4[5] b, float8e4m3fn[2] c, uint2[3] d)
  => (bfloat16[3] x, int4[5] y, float8e4m3fn[2] z, float[3] w) {
    fa = Cast <to = 1> (a)
    x = Cast <to = 16> (fa)
    fb = Cast <to = 1> (b)
    y = Cast <to = 22> (fb)
    fc = Cast <to = 1> (c)
    z = Cast <to = 17> (fc)
    w = Cast <to = 1> (d)
}
"""


def test_narrow_types_go_in_and_come_out_as_ml_dtypes_arrays() -> None:
    # ONNX Runtime's Python API takes and gives none of these; an odd int4 count checks packing
    feeds = {
        "a": np.array([1.5, -2, 3e10], ml_dtypes.bfloat16),
        "b": np.array([-8, -1, 0, 5, 7], ml_dtypes.int4),
        "c": np.array([448, -0.5], ml_dtypes.float8_e4m3fn),
        "d": np.array([0, 3, 2], ml_dtypes.uint2),
    }
    out = run_model(make_session(model_from_text(NARROW)), feeds)
    for name, source in (("x", "a"), ("y", "b"), ("z", "c")):
        assert out[name].dtype == feeds[source].dtype
        assert out[name].astype(np.float64).tolist() == feeds[source].astype(np.float64).tolist()
    assert out["w"].tolist() == [0.0, 3.0, 2.0]
