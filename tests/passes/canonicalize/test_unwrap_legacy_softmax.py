from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest

from irpass.passes.canonicalize.infer_shapes import InferShapesPass
from irpass.passes.canonicalize.unwrap_legacy_softmax import UnwrapLegacySoftmaxPass
from irpass.passes.canonicalize.upgrade_opset import UpgradeOpsetPass
from irpass.testing import assert_equivalent, model_from_text

LEGACY = """
<ir_version: 4, opset_import: ["" : 9]>
g (float[{shape}] x) => (float[{shape}] y) {{
  y = {op} <axis = {axis}> (x)
}}
"""

#: The converter's wrapper written out at opset 17, as ``upgrade_opset`` leaves it.
WRAPPED = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[{shape}] x) => (float[{shape}] y) {{
  s = Shape (x)
  f = Flatten <axis = {axis}> (x)
  m = Softmax <axis = -1> (f)
  y = Reshape (m, s)
}}
"""


def _upgraded(text: str) -> ir.Model:
    model = model_from_text(text)
    assert UpgradeOpsetPass()(model).modified is True
    InferShapesPass()(model)
    return model


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax"])
@pytest.mark.parametrize(("shape", "axis"), [("1,4,1,1", 1), ("2,3,1", 1), ("2,3,4,1", -2)])
def test_converter_wrapper_becomes_one_op(op: str, shape: str, axis: int) -> None:
    text = LEGACY.format(op=op, shape=shape, axis=axis)
    model, reference = _upgraded(text), model_from_text(text)
    assert "Flatten" in [n.op_type for n in model.graph]
    pass_ = UnwrapLegacySoftmaxPass()
    assert pass_(model).modified is True
    assert pass_.stats["softmax_wrappers_removed"] == 1
    assert [n.op_type for n in model.graph] == [op]
    assert [v.name for v in model.graph.outputs] == ["y"]
    assert_equivalent(reference, model)


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax", "Hardmax"])
@pytest.mark.parametrize("axis", [1, -3])
def test_written_out_wrapper_becomes_one_op(op: str, axis: int) -> None:
    text = WRAPPED.format(shape="1,4,1,1", axis=axis).replace("Softmax", op)
    model, reference = model_from_text(text), model_from_text(text)
    assert UnwrapLegacySoftmaxPass()(model).modified is True
    node = next(iter(model.graph))
    assert [n.op_type for n in model.graph] == [op]
    assert node.attributes["axis"].as_int() == 1
    assert_equivalent(reference, model)


def test_wrapper_kept_when_the_coercion_mixes_axes() -> None:
    text = LEGACY.format(op="Softmax", shape="2,3,4", axis=1)
    model, reference = _upgraded(text), model_from_text(text)
    assert UnwrapLegacySoftmaxPass()(model).modified is False
    assert "Flatten" in [n.op_type for n in model.graph]
    assert_equivalent(reference, model)


def test_wrapper_kept_without_shapes() -> None:
    text = WRAPPED.format(shape="1,4,1,1", axis=1)
    model = ir.from_proto(ir.to_proto(model_from_text(text)))
    model.graph.inputs[0].shape = None
    assert UnwrapLegacySoftmaxPass()(model).modified is False
    assert [n.op_type for n in model.graph] == ["Shape", "Flatten", "Softmax", "Reshape"]


def test_wrapper_kept_when_the_softmax_has_another_consumer() -> None:
    text = WRAPPED.format(shape="1,4,1,1", axis=1).replace(
        "=> (float[1,4,1,1] y)", "=> (float[1,4,1,1] y, float[1,4] m)"
    )
    model = model_from_text(text)
    assert UnwrapLegacySoftmaxPass()(model).modified is False


def test_shared_flatten_stays_for_its_other_consumer() -> None:
    text = WRAPPED.format(shape="1,4,1,1", axis=1).replace(
        "=> (float[1,4,1,1] y)", "=> (float[1,4,1,1] y, float[1,4] f)"
    )
    model, reference = model_from_text(text), model_from_text(text)
    assert UnwrapLegacySoftmaxPass()(model).modified is True
    assert sorted(n.op_type for n in model.graph) == ["Flatten", "Softmax"]
    assert_equivalent(reference, model)


def test_recurses_into_if_branches() -> None:
    text = """
    <ir_version: 4, opset_import: ["" : 9]>
    g (float[2,3] x, bool c) => (float[2,3] y) {
      y = If (c) <then_branch = t () => (float[2,3] ty) {
            ty = Softmax <axis = 1> (x)
         }, else_branch = e () => (float[2,3] ey) {
            ey = Relu (x)
         }>
    }
    """
    model, reference = _upgraded(text), model_from_text(text)
    assert UnwrapLegacySoftmaxPass()(model).modified is True
    branch = next(iter(model.graph)).attributes["then_branch"].as_graph()
    assert [n.op_type for n in branch] == ["Softmax"]
    for cond in (True, False):
        feeds = {"x": np.arange(6, dtype=np.float32).reshape(2, 3), "c": np.array(cond)}
        assert_equivalent(reference, model, feeds=feeds)
