from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest

from irpass.passes.canonicalize.eliminate_dead import EliminateDeadPass
from irpass.passes.canonicalize.infer_shapes import InferShapesPass
from irpass.passes.canonicalize.resolve_reshape_shapes import ResolveReshapeShapesPass
from irpass.testing import assert_equivalent, assert_unchanged, model_from_text, serialized

DYNAMIC_BATCH = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[N,12] x) => (float[N,3,4] y) <int64[1] zero = {0}, int64[1] one = {1},
                                       int64[1] three = {3}, int64[1] four = {4}> {
  s = Shape (x)
  n = Slice (s, zero, one)
  shape = Concat <axis = 0> (n, three, four)
  y = Reshape (x, shape)
}
"""

TWO_UNKNOWN = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[N,M] x) => (float[N,M,1] y) <int64[1] one = {1}> {
  s = Shape (x)
  shape = Concat <axis = 0> (s, one)
  y = Reshape (x, shape)
}
"""

CONSTANT_SHAPE = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[2,12] x) => (float[2,3,4] y) <int64[3] shape = {2, 3, 4}> {
  y = Reshape (x, shape)
}
"""


def _prepared(text: str) -> ir.Model:
    model = model_from_text(text)
    InferShapesPass()(model)
    return model


def test_batch_dependent_shape_becomes_constant() -> None:
    model, reference = _prepared(DYNAMIC_BATCH), model_from_text(DYNAMIC_BATCH)
    pass_ = ResolveReshapeShapesPass()
    assert pass_(model).modified is True
    EliminateDeadPass()(model)
    assert [n.op_type for n in model.graph] == ["Reshape"]
    shape = next(iter(model.graph)).inputs[1].const_value.numpy()
    assert shape.tolist() == [-1, 3, 4]
    assert pass_.stats["reshapes_resolved"] == 1
    for batch in (1, 5):
        assert_equivalent(reference, model, dim_values={"N": batch})


@pytest.mark.parametrize("text", [TWO_UNKNOWN, CONSTANT_SHAPE])
def test_leaves_reshape_alone(text: str) -> None:
    model = _prepared(text)
    before = serialized(model)
    assert ResolveReshapeShapesPass()(model).modified is False
    assert_unchanged(before, model)


@pytest.mark.parametrize("declared", ["float y", "float[N,3,5] y", "float[M,3,4] y"])
def test_annotations_that_contradict_the_input_are_not_trusted(declared: str) -> None:
    # Without inference, the declared output shape is all the pass sees and a graph output's
    # declaration is never trusted on its own; the first two also lie about the element count.
    model = model_from_text(DYNAMIC_BATCH.replace("float[N,3,4] y", declared))
    before = serialized(model)
    assert ResolveReshapeShapesPass()(model).modified is False
    assert_unchanged(before, model)


def test_declaration_confirmed_by_the_shape_tensor_length_is_used() -> None:
    # the third declaration names another symbolic dim: with the shape tensor's length known
    # (3), one unknown dim is resolved to -1 whatever M is
    model = model_from_text(DYNAMIC_BATCH.replace("float[N,3,4] y", "float[M,3,4] y"))
    shape_value = next(n for n in model.graph if n.op_type == "Reshape").inputs[1]
    shape_value.shape = ir.Shape([3])
    assert ResolveReshapeShapesPass()(model).modified is True


def test_in_if_branch_uses_a_constant_node() -> None:
    text = """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[N,12] x, bool c) => (float[N,3,4] y) {
      y = If (c) <then_branch = t () => (float[N,3,4] ty) {
            s = Shape (x)
            n = Slice (s, zero, one)
            shape = Concat <axis = 0> (n, three, four)
            ty = Reshape (x, shape)
         }, else_branch = e () => (float[N,3,4] ey) {
            ey = Reshape (x, shape2)
         }>
    }
    """
    text = text.replace(
        "g (float[N,12] x, bool c) => (float[N,3,4] y) {",
        "g (float[N,12] x, bool c) => (float[N,3,4] y) <int64[1] zero = {0}, int64[1] one = {1},"
        " int64[1] three = {3}, int64[1] four = {4}, int64[3] shape2 = {-1, 3, 4}> {",
    )
    model, reference = _prepared(text), model_from_text(text)
    assert ResolveReshapeShapesPass()(model).modified is True
    for cond in (True, False):
        feeds = {"x": np.ones((2, 12), np.float32), "c": np.array(cond)}
        assert_equivalent(reference, model, feeds=feeds)


def test_allowzero_reshape_is_resolved_too() -> None:
    text = DYNAMIC_BATCH.replace("y = Reshape (x, shape)", "y = Reshape <allowzero = 1> (x, shape)")
    model, reference = _prepared(text), model_from_text(text)
    assert ResolveReshapeShapesPass()(model).modified is True
    assert_equivalent(reference, model, dim_values={"N": 2})


def test_wrong_declared_output_rank_is_not_trusted() -> None:
    # the final Reshape feeds a graph output declared rank 2; the shape tensor has 3 entries
    text = """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[N, 6] x) => (float[1, seqlen] y)
      <int64[1] zero = {0}, int64[1] one = {1}, int64[1] minus = {-1}> {
      s = Shape (x)
      n = Slice (s, zero, one)
      c = Concat <axis = 0> (n, one, minus)
      y = Reshape (x, c)
    }
    """
    model = model_from_text(text)
    reference = model.clone()
    InferShapesPass()(model)
    result = ResolveReshapeShapesPass()(model)
    # either left alone or resolved to the computed rank; never to the declared [1, -1]
    reshape = next(n for n in model.graph if n.op_type == "Reshape")
    shape = reshape.inputs[1].const_value
    assert shape is None or len(shape.numpy()) == 3
    assert result.modified == (shape is not None)
    assert_equivalent(reference, model, dim_values={"N": 3})
