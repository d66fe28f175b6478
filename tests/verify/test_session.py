from __future__ import annotations

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
