from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest

from irpass.passes.canonicalize.eliminate_dead import EliminateDeadPass
from irpass.testing import assert_equivalent, assert_unchanged, model_from_text, serialized

HEADER = '<ir_version: 8, opset_import: ["" : 17{extra}]>\n'

CASES = {
    "dead_node": ("g (float[2] x) => (float[2] y) { t = Exp (x)\n y = Relu (x) }", "nodes_removed"),
    "dead_chain": (
        "g (float[2] x) => (float[2] y) { a = Exp (x)\n b = Neg (a)\n y = Relu (x) }",
        "nodes_removed",
    ),
    "unused_initializer": (
        "g (float[2] x) => (float[2] y) <float[2] w = {1.0, 2.0}> { y = Relu (x) }",
        "initializers_removed",
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_removes_dead_code(name: str) -> None:
    body, stat = CASES[name]
    text = HEADER.format(extra="") + body
    model, reference = model_from_text(text), model_from_text(text)
    pass_ = EliminateDeadPass()
    assert pass_(model).modified is True
    assert [n.op_type for n in model.graph] == ["Relu"]
    assert not model.graph.initializers
    assert pass_.stats[stat] >= 1
    assert_equivalent(reference, model)


def test_removes_unused_opset_import() -> None:
    model = model_from_text(
        HEADER.format(extra=', "com.example" : 1')
        + "g (float[2] x) => (float[2] y) { y = Relu (x) }"
    )
    pass_ = EliminateDeadPass()
    assert pass_(model).modified is True
    assert "com.example" not in model.opset_imports
    assert pass_.stats["opset_imports_removed"] == 1


def test_nothing_dead_is_unmodified() -> None:
    model = model_from_text(
        HEADER.format(extra="") + "g (float[2] x) => (float[2] y) { a = Exp (x)\n y = Relu (a) }"
    )
    before = serialized(model)
    assert EliminateDeadPass()(model).modified is False
    assert_unchanged(before, model)


def test_keeps_signature_and_custom_ops() -> None:
    text = (
        HEADER.format(extra=', "com.example" : 1')
        + """
    g (float[2] x, float[2] unused_input) => (float[2] y) {
      c = com.example.Magic (x)
      y = Relu (c)
    }
    """
    )
    model = model_from_text(text)
    before = serialized(model)
    assert EliminateDeadPass()(model).modified is False
    assert_unchanged(before, model)


def test_recurses_into_if_branches() -> None:
    text = (
        HEADER.format(extra="")
        + """
    g (float[2] x, bool c) => (float[2] y) {
      y = If (c) <then_branch = t () => (float[2] ty) <float[2] unused = {1.0, 2.0}> {
            dead = Exp (x)
            ty = Relu (x)
         }, else_branch = e () => (float[2] ey) {
            ey = Neg (x)
         }>
    }
    """
    )
    model, reference = model_from_text(text), model_from_text(text)
    pass_ = EliminateDeadPass()
    assert pass_(model).modified is True
    then_branch = next(iter(model.graph)).attributes["then_branch"].as_graph()
    assert [n.op_type for n in then_branch] == ["Relu"]
    assert not then_branch.initializers
    for cond in (True, False):
        feeds = {"x": np.array([1.0, -2.0], np.float32), "c": np.array(cond)}
        assert_equivalent(reference, model, feeds=feeds)


def test_trimmed_optional_output_in_a_branch_is_reported() -> None:
    # silero-vad's LSTMs inside If branches: onnx-ir drops the unused Y output's name and
    # says nothing; the manager's fingerprint then flagged eliminate_dead as under-reporting.
    text = (
        HEADER.format(extra="")
        + """
    g (float[1, 2] x, bool c) => (float[1, 2] y) {
      y = If (c) <then_branch = t () => (float[1, 2] ty) {
            ty, mask = Dropout (x)
         }, else_branch = e () => (float[1, 2] ey) {
            ey = Neg (x)
         }>
    }
    """
    )
    model, reference = model_from_text(text), model_from_text(text)
    pass_ = EliminateDeadPass()
    assert pass_(model).modified is True
    then_branch = next(iter(model.graph)).attributes["then_branch"].as_graph()
    assert [o.name for o in next(iter(then_branch)).outputs if o.name] == ["ty"]
    assert pass_.stats["optional_outputs_trimmed"] == 1
    for cond in (True, False):
        feeds = {"x": np.array([[1.0, -2.0]], np.float32), "c": np.array(cond)}
        assert_equivalent(reference, model, feeds=feeds)


def test_runs_inside_onnx_ir_pass_manager() -> None:
    model = model_from_text(HEADER.format(extra="") + CASES["dead_node"][0])
    assert ir.passes.PassManager([EliminateDeadPass()])(model).modified is True
