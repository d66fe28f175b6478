from __future__ import annotations

import onnx_ir as ir
import pytest

from irpass.passes.canonicalize.inputs_to_initializers import ConvertInputsToInitializersPass
from irpass.testing import assert_equivalent, model_from_text

IR3 = """
<ir_version: 3, opset_import: ["" : 9]>
g (float[2,3] x, float[3] w) => (float[2,3] y) <float[3] w = {1, 2, 3}> {
  y = Mul (x, w)
}
"""

IR8 = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[2,3] x) => (float[2,3] y) <float[3] w = {1, 2, 3}> {
  k = Constant <value_floats = [1.0, 2.0, 3.0]> ()
  m = Mul (x, w)
  y = Add (m, k)
}
"""


def test_initializer_inputs_become_constants() -> None:
    model, reference = model_from_text(IR3), model_from_text(IR3)
    pass_ = ConvertInputsToInitializersPass()
    assert pass_(model).modified is True
    assert [v.name for v in model.graph.inputs] == ["x"]
    assert "w" in model.graph.initializers
    assert model.ir_version == 4
    assert pass_.stats["inputs_made_initializers"] == 1
    assert_equivalent(reference, model)


def test_plain_inputs_and_constants_untouched_by_default() -> None:
    model = model_from_text(IR8)
    assert ConvertInputsToInitializersPass()(model).modified is False
    assert [n.op_type for n in model.graph] == ["Constant", "Mul", "Add"]


@pytest.mark.parametrize("text", [IR3, IR8])
def test_lift_constants_option(text: str) -> None:
    model, reference = model_from_text(text), model_from_text(text)
    options = ConvertInputsToInitializersPass.Options(lift_constants=True)
    assert ConvertInputsToInitializersPass(options)(model).modified is True
    assert "Constant" not in [n.op_type for n in model.graph]
    assert_equivalent(reference, model)


def test_runs_inside_onnx_ir_pass_manager() -> None:
    model = model_from_text(IR3)
    assert ir.passes.PassManager([ConvertInputsToInitializersPass()])(model).modified is True
