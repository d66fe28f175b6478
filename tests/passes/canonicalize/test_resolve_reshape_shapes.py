from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest

from irpass.passes.canonicalize.eliminate_dead import EliminateDeadPass
from irpass.passes.canonicalize.infer_shapes import InferShapesPass
from irpass.passes.canonicalize.resolve_reshape_shapes import ResolveReshapeShapesPass
from irpass.testing import assert_equivalent, model_from_text

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
    assert ResolveReshapeShapesPass()(model).modified is False


@pytest.mark.parametrize("declared", ["float y", "float[N,3,5] y", "float[M,3,4] y"])
def test_annotations_that_contradict_the_input_are_not_trusted(declared: str) -> None:
    # Without inference, the declared output shape is all the pass sees; the first two lie
    # about the element count, the third names a different symbolic dim (could be anything).
    model = model_from_text(DYNAMIC_BATCH.replace("float[N,3,4] y", declared))
    result = ResolveReshapeShapesPass()(model)
    if declared == "float[M,3,4] y":
        assert result.modified is True  # one unknown dim: -1 is right whatever M is
    else:
        assert result.modified is False


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
