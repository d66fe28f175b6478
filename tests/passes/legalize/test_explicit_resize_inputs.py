from __future__ import annotations

import onnx_ir as ir

from irpass.passes.legalize.explicit_resize_inputs import ExplicitResizeInputsPass
from irpass.testing import assert_equivalent, model_from_text


def test_omitted_roi_and_scales_become_empty_constants_and_stay_equal():
    m = model_from_text("""
    <ir_version: 9, opset_import: ["" : 17]>
    g (float[1,2,4,4] x) => (float[1,2,8,8] y, float[1,2,6,6] z) {
      scales = Constant<value = float[4] {1.0, 1.0, 2.0, 2.0}>()
      y = Resize<mode="linear">(x, , scales)
      sizes = Constant<value = int64[4] {1, 2, 6, 6}>()
      z = Resize<mode="nearest">(x, , , sizes)
    }""")
    reference = ir.from_proto(ir.to_proto(m))
    p = ExplicitResizeInputsPass()
    assert p(m).modified
    assert dict(p.stats) == {"roi": 2, "scales": 1}
    resizes = [n for n in m.graph if n.op_type == "Resize"]
    assert all(n.inputs[1] is not None for n in resizes)
    assert len([v for v in m.graph.initializers if v.startswith("resize_empty")]) == 1
    assert_equivalent(reference, m)


def test_given_inputs_and_old_opsets_are_left_alone():
    m = model_from_text("""
    <ir_version: 9, opset_import: ["" : 17]>
    g (float[1,2,4,4] x, float[0] roi, float[4] scales) => (float[1,2,8,8] y) {
      y = Resize(x, roi, scales)
    }""")
    before = ir.to_proto(m).SerializeToString()
    assert ExplicitResizeInputsPass()(m).modified is False
    assert ir.to_proto(m).SerializeToString() == before
    old = model_from_text("""
    <ir_version: 7, opset_import: ["" : 10]>
    g (float[1,2,4,4] x, float[4] scales) => (float[1,2,8,8] y) {
      y = Resize(x, scales)
    }""")
    assert ExplicitResizeInputsPass()(old).modified is False
