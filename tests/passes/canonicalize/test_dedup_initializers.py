from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest

from irpass.passes.canonicalize.dedup_initializers import DeduplicateInitializersPass
from irpass.testing import assert_equivalent, assert_unchanged, model_from_text, serialized

TEMPLATE = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[2,3] x) => (float[2,3] y) <{dtype}[3] a = {{{a}}}, {dtype}[3] b = {{{b}}}> {{
  ca = Cast <to = 1> (a)
  cb = Cast <to = 1> (b)
  m = Mul (x, ca)
  y = Add (m, cb)
}}
"""


@pytest.mark.parametrize("dtype", ["float", "int64", "int8"])
def test_merges_equal_initializers(dtype: str) -> None:
    text = TEMPLATE.format(dtype=dtype, a="1, 2, 3", b="1, 2, 3")
    model, reference = model_from_text(text), model_from_text(text)
    pass_ = DeduplicateInitializersPass()
    assert pass_(model).modified is True
    assert list(model.graph.initializers) == ["a"]
    assert pass_.stats["initializers_merged"] == 1
    assert_equivalent(reference, model)


@pytest.mark.parametrize("a,b", [("1, 2, 3", "1, 2, 4"), ("0, 0, 0", "0, 0, 1")])
def test_keeps_different_initializers(a: str, b: str) -> None:
    model = model_from_text(TEMPLATE.format(dtype="float", a=a, b=b))
    before = serialized(model)
    assert DeduplicateInitializersPass()(model).modified is False
    assert_unchanged(before, model)


def test_large_equal_weights_are_merged() -> None:
    graph = ir.Graph([], [], nodes=[], opset_imports={"": 17})
    x = ir.Value(name="x", type=ir.TensorType(ir.DataType.FLOAT), shape=ir.Shape([256, 256]))
    graph.inputs.append(x)
    previous = x
    for i in range(3):
        w = ir.Value(name=f"w{i}", const_value=ir.tensor(np.full((256, 256), 0.02, np.float32)))
        w.type = ir.TensorType(ir.DataType.FLOAT)
        w.shape = ir.Shape([256, 256])
        graph.register_initializer(w)
        node = ir.node("MatMul", inputs=[previous, w])
        graph.append(node)
        previous = node.outputs[0]
        previous.name = f"h{i}"
    graph.outputs.append(previous)
    model = ir.Model(graph, ir_version=8)
    pass_ = DeduplicateInitializersPass()
    assert pass_(model).modified is True
    assert list(model.graph.initializers) == ["w0"]
    assert pass_.stats["initializers_merged"] == 2


def test_initializers_that_are_inputs_are_not_merged() -> None:
    text = """
    <ir_version: 3, opset_import: ["" : 9]>
    g (float[2,3] x, float[3] a, float[3] b) => (float[2,3] y)
      <float[3] a = {1, 2, 3}, float[3] b = {1, 2, 3}> {
      m = Mul (x, a)
      y = Add (m, b)
    }
    """
    model = model_from_text(text)
    before = serialized(model)
    assert DeduplicateInitializersPass()(model).modified is False
    assert_unchanged(before, model)


def test_recurses_into_if_branches() -> None:
    text = """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[3] x, bool c) => (float[3] y) {
      y = If (c) <then_branch = t () => (float[3] ty)
            <float[3] a = {1, 2, 3}, float[3] b = {1, 2, 3}> {
            m = Mul (x, a)
            ty = Add (m, b)
         }, else_branch = e () => (float[3] ey) {
            ey = Neg (x)
         }>
    }
    """
    model, reference = model_from_text(text), model_from_text(text)
    assert DeduplicateInitializersPass()(model).modified is True
    then_branch = next(iter(model.graph)).attributes["then_branch"].as_graph()
    assert len(then_branch.initializers) == 1
    for cond in (True, False):
        feeds = {"x": np.array([1.0, -2.0, 3.0], np.float32), "c": np.array(cond)}
        assert_equivalent(reference, model, feeds=feeds)


def test_runs_inside_onnx_ir_pass_manager() -> None:
    model = model_from_text(TEMPLATE.format(dtype="float", a="1, 2, 3", b="1, 2, 3"))
    assert ir.passes.PassManager([DeduplicateInitializersPass()])(model).modified is True


def _two_weight_model(a: np.ndarray, b: np.ndarray) -> ir.Model:
    x = ir.Value(name="x", type=ir.TensorType(ir.DataType.FLOAT), shape=ir.Shape(a.shape))
    graph = ir.Graph([x], [], nodes=[], opset_imports={"": 17})
    values = []
    for name, array in (("a", a), ("b", b)):
        value = ir.Value(name=name, const_value=ir.tensor(array))
        value.type = ir.TensorType(ir.DataType.FLOAT)
        value.shape = ir.Shape(array.shape)
        graph.register_initializer(value)
        values.append(value)
    add1 = ir.node("Add", inputs=[x, values[0]])
    add2 = ir.node("Add", inputs=[add1.outputs[0], values[1]])
    add2.outputs[0].name = "y"
    graph.extend([add1, add2])
    graph.outputs.append(add2.outputs[0])
    return ir.Model(graph, ir_version=8)


def test_arrays_differing_outside_the_fingerprint_sample_stay_apart() -> None:
    a = np.zeros(100_003, np.float32)
    b = a.copy()
    b[1] = 1.0  # not one of the sampled elements
    assert DeduplicateInitializersPass()(_two_weight_model(a, b)).modified is False


def test_negative_zero_is_not_zero() -> None:
    a = np.zeros(4, np.float32)
    b = -a
    assert DeduplicateInitializersPass()(_two_weight_model(a, b)).modified is False
