from __future__ import annotations

import numpy as np
import onnx_ir as ir

from irpass.passes.legalize.explicit_zero_points import ExplicitZeroPointsPass
from irpass.testing import assert_equivalent, model_from_text


def test_omitted_zero_points_become_typed_zeros_and_stay_equal():
    m = model_from_text("""
    <ir_version: 9, opset_import: ["" : 17]>
    g (float[2,3] x) => (float[2,3] y, float[3,2] w) {
      s = Constant<value = float {0.05}>()
      q = QuantizeLinear(x, s)
      y = DequantizeLinear(q, s)
      wq = Constant<value = int8[3,2] {1, -2, 3, -4, 5, -6}>()
      ws = Constant<value = float[3] {0.1, 0.2, 0.3}>()
      w = DequantizeLinear<axis=0>(wq, ws)
    }""")
    reference = ir.from_proto(ir.to_proto(m))
    p = ExplicitZeroPointsPass()
    assert p(m).modified
    assert dict(p.stats) == {"QuantizeLinear": 1, "DequantizeLinear": 2}
    zeros = [n.inputs[2].const_value.numpy() for n in m.graph if len(n.inputs) == 3]
    assert sorted(str(z.dtype) for z in zeros) == ["int8", "uint8", "uint8"]
    assert [z.shape for z in zeros if z.dtype == np.int8] == [(3,)]
    assert_equivalent(reference, m)


def test_given_zero_points_are_left_alone():
    m = model_from_text("""
    <ir_version: 9, opset_import: ["" : 17]>
    g (float[2,3] x) => (float[2,3] y) {
      s = Constant<value = float {0.05}>()
      z = Constant<value = int8 {0}>()
      q = QuantizeLinear(x, s, z)
      y = DequantizeLinear(q, s, z)
    }""")
    assert ExplicitZeroPointsPass()(m).modified is False
