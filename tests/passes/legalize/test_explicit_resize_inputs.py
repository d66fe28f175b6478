from __future__ import annotations

import onnx_ir as ir
import pytest

from irpass.passes.legalize.explicit_resize_inputs import ExplicitResizeInputsPass
from irpass.testing import assert_equivalent, model_from_text


@pytest.mark.parametrize("mode", ['"half_pixel"', '"asymmetric"', '"tf_crop_and_resize"'])
def test_omitted_roi_becomes_the_whole_image_and_stays_equal(mode):
    m = model_from_text(f"""
    <ir_version: 9, opset_import: ["" : 17]>
    g (float[1,2,4,4] x) => (float[1,2,8,8] y, float[1,2,8,8] z) {{
      scales = Constant<value = float[4] {{1.0, 1.0, 2.0, 2.0}}>()
      y = Resize<mode="linear", coordinate_transformation_mode={mode}>(x, , scales)
      z = Resize<mode="nearest">(x, , scales)
    }}""")
    reference = ir.from_proto(ir.to_proto(m))
    p = ExplicitResizeInputsPass()
    assert p(m).modified and dict(p.stats) == {"roi": 2}
    roi = m.graph.initializers["resize_roi_4d"].const_value.numpy().tolist()
    assert roi == [0, 0, 0, 0, 1, 1, 1, 1]
    assert_equivalent(reference, m)


def test_given_roi_sizes_resizes_and_old_opsets_are_left_alone():
    m = model_from_text("""
    <ir_version: 9, opset_import: ["" : 17]>
    g (float[1,2,4,4] x, float[8] roi, float[4] scales, int64[4] sizes) => (float y, float z) {
      y = Resize(x, roi, scales)
      z = Resize(x, , , sizes)
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
