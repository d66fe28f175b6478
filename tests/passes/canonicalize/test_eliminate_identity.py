from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest

from irpass.passes.canonicalize.eliminate_identity import EliminateIdentityPass
from irpass.testing import assert_equivalent, assert_unchanged, model_from_text, serialized

HEADER = '<ir_version: 8, opset_import: ["" : {opset}]>\n'

REMOVABLE = {
    "identity": "g (float[2,3] x) => (float[2,3] y) { i = Identity (x)\n y = Relu (i) }",
    "identity_chain": (
        "g (float[2,3] x) => (float[2,3] y) { a = Identity (x)\n b = Identity (a)\n y = Relu (b) }"
    ),
    "identity_to_output": "g (float[2,3] x) => (float[2,3] y) { r = Relu (x)\n y = Identity (r) }",
    "dropout": "g (float[2,3] x) => (float[2,3] y) { d = Dropout (x)\n y = Relu (d) }",
    "dropout_unused_mask": (
        "g (float[2,3] x) => (float[2,3] y) { d, m = Dropout (x)\n y = Relu (d) }"
    ),
    "dropout_training_false": (
        "g (float[2,3] x) => (float[2,3] y) <float r = {0.3}, bool t = {0}> "
        "{ d = Dropout (x, r, t)\n y = Relu (d) }"
    ),
    "dropout_to_output": "g (float[2,3] x) => (float[2,3] y) { r = Relu (x)\n y = Dropout (r) }",
}

KEPT = {
    "no_identity": "g (float[2,3] x) => (float[2,3] y) { y = Relu (x) }",
    "input_to_output": "g (float[2,3] x) => (float[2,3] y) { y = Identity (x) }",
    "mask_used": (
        "g (float[2,3] x) => (float[2,3] y, bool[2,3] m) { d, m = Dropout (x)\n y = Relu (d) }"
    ),
    "training_true": (
        "g (float[2,3] x) => (float[2,3] y) <float r = {0.3}, bool t = {1}> "
        "{ d = Dropout (x, r, t)\n y = Relu (d) }"
    ),
    "training_dynamic": (
        "g (float[2,3] x, bool t) => (float[2,3] y) <float r = {0.3}> "
        "{ d = Dropout (x, r, t)\n y = Relu (d) }"
    ),
}


@pytest.mark.parametrize("opset", [13, 17])
@pytest.mark.parametrize("name", sorted(REMOVABLE))
def test_removes_identity_and_inference_dropout(name: str, opset: int) -> None:
    text = HEADER.format(opset=opset) + REMOVABLE[name]
    model, reference = model_from_text(text), model_from_text(text)
    pass_ = EliminateIdentityPass()
    assert pass_(model).modified is True
    assert [n.op_type for n in model.graph] == ["Relu"]
    assert [v.name for v in model.graph.outputs] == ["y"]
    assert pass_.stats["dropout_removed"] + pass_.stats["identity_removed"] >= 1
    assert_equivalent(reference, model)


@pytest.mark.parametrize("name", sorted(KEPT))
def test_leaves_what_is_not_an_identity(name: str) -> None:
    model = model_from_text(HEADER.format(opset=17) + KEPT[name])
    before = serialized(model)
    assert EliminateIdentityPass()(model).modified is False
    assert_unchanged(before, model)


def test_recurses_into_if_branches() -> None:
    text = (
        HEADER.format(opset=17)
        + """
    g (float[2] x, bool c) => (float[2] y) {
      y = If (c) <then_branch = t () => (float[2] ty) {
            i = Identity (x)
            ty = Relu (i)
         }, else_branch = e () => (float[2] ey) {
            d = Dropout (x)
            ey = Neg (d)
         }>
    }
    """
    )
    model, reference = model_from_text(text), model_from_text(text)
    pass_ = EliminateIdentityPass()
    assert pass_(model).modified is True
    node = next(iter(model.graph))
    assert [n.op_type for n in node.attributes["then_branch"].as_graph()] == ["Relu"]
    assert [n.op_type for n in node.attributes["else_branch"].as_graph()] == ["Neg"]
    for cond in (True, False):
        feeds = {"x": np.array([1.0, -2.0], np.float32), "c": np.array(cond)}
        assert_equivalent(reference, model, feeds=feeds)


def test_runs_inside_onnx_ir_pass_manager() -> None:
    model = model_from_text(HEADER.format(opset=17) + REMOVABLE["dropout"])
    result = ir.passes.PassManager([EliminateIdentityPass()])(model)
    assert result.modified is True


SCAN_BODY_OUTPUTS = """
g (float[2] initial, float[3,2] x) => (float[2] y, float[3,2] z) {
  y, z = Scan (initial, x) <num_scan_inputs = 1, body = body (
      float[2] sum_in, float[2] next) => (float[2] sum_out, float[2] scan_out) {
    sum_out = Add (sum_in, next)
    scan_out = Identity (sum_out)
  }>
}
"""


def test_body_output_copying_another_output_is_kept() -> None:
    # Scan outputs are positional: the running sum is both the state and the scan output.
    text = HEADER.format(opset=17) + SCAN_BODY_OUTPUTS
    model, reference = model_from_text(text), model_from_text(text)
    pass_ = EliminateIdentityPass()
    assert pass_(model).modified is False
    body = next(iter(model.graph)).attributes["body"].as_graph()
    assert [n.op_type for n in body] == ["Add", "Identity"]
    assert [v.name for v in body.outputs] == ["sum_out", "scan_out"]
    assert pass_.stats["identity_kept"] == 1
    assert_equivalent(reference, model)


def test_graph_output_copying_another_output_is_kept() -> None:
    text = HEADER.format(opset=17) + (
        "g (float[2,3] x) => (float[2,3] r, float[2,3] y) { r = Relu (x)\n y = Identity (r) }"
    )
    model = model_from_text(text)
    assert EliminateIdentityPass()(model).modified is False
    assert [v.name for v in model.graph.outputs] == ["r", "y"]


def test_body_output_copying_an_outer_value_is_kept() -> None:
    text = (
        HEADER.format(opset=17)
        + """
    g (float[2] x, bool c) => (float[2] y) {
      r = Relu (x)
      y = If (c) <then_branch = t () => (float[2] ty) {
            ty = Identity (r)
         }, else_branch = e () => (float[2] ey) {
            ey = Neg (r)
         }>
    }
    """
    )
    model, reference = model_from_text(text), model_from_text(text)
    assert EliminateIdentityPass()(model).modified is False
    assert [n.outputs[0].name for n in model.graph] == ["r", "y"]
    for cond in (True, False):
        feeds = {"x": np.array([1.0, -2.0], np.float32), "c": np.array(cond)}
        assert_equivalent(reference, model, feeds=feeds)


def test_body_identity_on_a_computed_value_is_removed() -> None:
    text = HEADER.format(opset=17) + SCAN_BODY_OUTPUTS.replace(
        "scan_out = Identity (sum_out)", "d = Mul (sum_out, next)\n    scan_out = Identity (d)"
    )
    model, reference = model_from_text(text), model_from_text(text)
    assert EliminateIdentityPass()(model).modified is True
    body = next(iter(model.graph)).attributes["body"].as_graph()
    assert [n.op_type for n in body] == ["Add", "Mul"]
    assert [v.name for v in body.outputs] == ["sum_out", "scan_out"]
    assert_equivalent(reference, model)
