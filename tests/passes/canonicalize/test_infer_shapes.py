from __future__ import annotations

import onnx_ir as ir

from irpass.passes.canonicalize.infer_shapes import InferShapesPass
from irpass.testing import assert_unchanged, model_from_text, serialized

SIMPLE = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[1,3,8,8] x) => (float[1,3,8,8] y) {
  r = Relu (x)
  s = Shape (r)
  y = Reshape (r, s)
}
"""


def _value(model: ir.Model, name: str) -> ir.Value:
    return next(v for n in model.graph for v in n.outputs if v.name == name)


def test_annotates_shapes() -> None:
    model = model_from_text(SIMPLE)
    pass_ = InferShapesPass()
    assert pass_(model).modified is True
    assert _value(model, "r").shape == ir.Shape([1, 3, 8, 8])
    assert _value(model, "s").shape == ir.Shape([4])
    assert pass_.stats["values_annotated"] >= 2


def test_second_run_is_unmodified() -> None:
    model = model_from_text(SIMPLE)
    InferShapesPass()(model)
    before = serialized(model)
    assert InferShapesPass()(model).modified is False
    assert_unchanged(before, model)


def test_custom_domain_does_not_fail_the_pass() -> None:
    text = """
    <ir_version: 8, opset_import: ["" : 17, "com.example" : 1]>
    g (float[2] x) => (float[2] y) {
      a = Relu (x)
      c = com.example.Magic (a)
      y = Neg (c)
    }
    """
    model = model_from_text(text)
    result = InferShapesPass()(model)
    assert result.model is model
    assert _value(model, "a").shape == ir.Shape([2])
    assert [n.op_type for n in model.graph] == ["Relu", "Magic", "Neg"]


def test_inconsistent_model_is_left_unchanged() -> None:
    # The operands cannot broadcast: strict inference must fail, and the pass must neither
    # raise nor report a change.
    text = """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2,3] x, float[4] z) => (float[2,3] y) {
      a = Add (x, z)
      y = Relu (a)
    }
    """
    model = model_from_text(text)
    pass_ = InferShapesPass(InferShapesPass.Options(strict=True))
    before = serialized(model)
    result = pass_(model)
    assert result.modified is False
    assert_unchanged(before, model)


def test_infers_in_if_branches() -> None:
    text = """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2,3] x, bool c) => (float[2,3] y) {
      y = If (c) <then_branch = t () => (float[2,3] ty) {
            a = Relu (x)
            ty = Neg (a)
         }, else_branch = e () => (float[2,3] ey) {
            ey = Neg (x)
         }>
    }
    """
    model = model_from_text(text)
    assert InferShapesPass()(model).modified is True
    then_branch = next(iter(model.graph)).attributes["then_branch"].as_graph()
    relu = next(iter(then_branch))
    assert relu.outputs[0].shape == ir.Shape([2, 3])


def test_wrong_output_declaration_is_corrected_and_reported() -> None:
    # exporters get declared output shapes wrong: the graph computes rank 3, declares rank 2
    text = """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[4, 6] x) => (float[1, seqlen] y) <int64[3] s = {4, 1, 6}> {
      y = Reshape (x, s)
    }
    """
    model = model_from_text(text)
    pass_ = InferShapesPass()
    assert pass_(model).modified
    assert list(model.graph.outputs[0].shape) == [4, 1, 6]
    assert pass_.stats["output_declarations_corrected"] == 1


def test_compatible_output_declaration_is_kept() -> None:
    text = """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[N, 6] x) => (float[N, 6] y) { y = Relu (x) }
    """
    model = model_from_text(text)
    InferShapesPass()(model)
    assert str(model.graph.outputs[0].shape) == "[N,6]"
