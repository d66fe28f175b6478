from __future__ import annotations

import logging

import numpy as np
import onnx_ir as ir
import pytest

from irpass.passes.canonicalize.simplify_onnxsim import SimplifyWithOnnxsimPass
from irpass.testing import assert_equivalent, assert_unchanged, model_from_text, serialized

pytest.importorskip("onnxsim")

FOLDABLE = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[2,3] x) => (float[2,3] y) <float[3] a = {1, 2, 3}> {
  b = Add (a, a)
  i = Identity (b)
  y = Mul (x, i)
}
"""


def test_simplifies_and_moves_result_into_the_same_model() -> None:
    model, reference = model_from_text(FOLDABLE), model_from_text(FOLDABLE)
    pass_ = SimplifyWithOnnxsimPass()
    result = pass_(model)
    assert result.modified is True and result.model is model
    assert [n.op_type for n in model.graph] == ["Mul"]
    assert pass_.stats["nodes_removed"] == 2
    assert_equivalent(reference, model)


@pytest.mark.parametrize("failure", ["raises", "check_fails"])
def test_failure_is_recorded_and_model_unchanged(
    failure: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import onnxsim

    def broken(proto, **kwargs):
        if failure == "raises":
            raise RuntimeError("No Op registered for Magic with domain_version of 1")
        return proto, False

    monkeypatch.setattr(onnxsim, "simplify", broken)
    model = model_from_text(FOLDABLE)
    before = serialized(model)
    pass_ = SimplifyWithOnnxsimPass()
    with caplog.at_level(logging.WARNING):
        result = pass_(model)
    assert result.modified is False
    assert_unchanged(before, model)
    key = "failed_error" if failure == "raises" else "failed_check"
    assert pass_.stats[key] == 1
    assert [n.op_type for n in model.graph] == ["Add", "Identity", "Mul"]
    assert "onnxsim" in caplog.text


def test_too_large_model_is_refused_before_trying(monkeypatch: pytest.MonkeyPatch) -> None:
    import irpass.passes.canonicalize.simplify_onnxsim as module

    monkeypatch.setattr(module, "PROTOBUF_LIMIT", 4)
    model = model_from_text(FOLDABLE)
    before = serialized(model)
    pass_ = SimplifyWithOnnxsimPass()
    assert pass_(model).modified is False
    assert pass_.stats["failed_too_large"] == 1
    assert_unchanged(before, model)


def test_if_model_is_simplified() -> None:
    text = """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2] x, bool c) => (float[2] y) {
      y = If (c) <then_branch = t () => (float[2] ty) {
            i = Identity (x)
            ty = Relu (i)
         }, else_branch = e () => (float[2] ey) {
            ey = Neg (x)
         }>
    }
    """
    model, reference = model_from_text(text), model_from_text(text)
    SimplifyWithOnnxsimPass()(model)
    for cond in (True, False):
        feeds = {"x": np.array([1.0, -2.0], np.float32), "c": np.array(cond)}
        assert_equivalent(reference, model, feeds=feeds)


def test_runs_inside_onnx_ir_pass_manager() -> None:
    model = model_from_text(FOLDABLE)
    assert ir.passes.PassManager([SimplifyWithOnnxsimPass()])(model).modified is True


# Found by the fuzzer (irpass.fuzz): onnxsim folded the overridable bias `b` (a graph input
# with a default) into a constant, LayerNormalization over a size-1 axis being its bias.
OVERRIDABLE = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[1,1] x, float[1] b) => (float[1,1] y) <float[1] s = {0.96}, float[1] b = {0.11}> {
  y = LayerNormalization <axis = -1> (x, s, b)
}
"""


def test_inputs_with_defaults_stay_inputs_with_their_defaults() -> None:
    model, reference = model_from_text(OVERRIDABLE), model_from_text(OVERRIDABLE)
    assert SimplifyWithOnnxsimPass()(model).modified
    assert [v.name for v in model.graph.inputs] == ["x", "b"]
    assert model.graph.initializers["b"].const_value.numpy().tolist() == pytest.approx([0.11])
    feeds = {"x": np.ones((1, 1), np.float32), "b": np.array([-3.0], np.float32)}
    assert_equivalent(reference, model, feeds=feeds)
