from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest

from irpass.manager import PipelineRunner, RunOptions
from irpass.pipeline import expand_presets, format_pipeline, parse_pipeline
from irpass.registry import get_preset
from irpass.testing import assert_equivalent, model_from_text

IF_MODEL = """
<ir_version: 4, opset_import: ["" : 11]>
g (float[2] x, bool c, float[2] w) => (float[2] y) <float[2] w = {0.5, 0.25}> {
  wi = Identity (w)
  y = If (c) <then_branch = then_g () => (float[2] t_out) {
        k = Constant <value = float[2] {1.0, 2.0}> ()
        k2 = Add (k, k)
        dead = Exp (x)
        i = Identity (k2)
        a = Mul (x, wi)
        t_out = Add (a, i)
     }, else_branch = else_g () => (float[2] e_out) {
        d = Dropout (x)
        r1 = Relu (d)
        r2 = Relu (d)
        e_out = Add (r1, r2)
     }>
}
"""

CUSTOM = """
<ir_version: 8, opset_import: ["" : 13, "com.example" : 1]>
g (float[2,3] x) => (float[2,3] y) <float[3] a = {1, 2, 3}> {
  i = Identity (x)
  b = Add (a, a)
  c = com.example.Fancy <alpha = 0.5, mode = "fast"> (i, b)
  d = Dropout (c)
  y = Relu (d)
}
"""


def _run(model: ir.Model, **options: object) -> ir.Model:
    PipelineRunner("canonicalize", options=RunOptions(**options)).run(model)
    return model


def test_preset_is_registered_and_expands_to_passes() -> None:
    preset = get_preset("canonicalize")
    assert preset is not None
    steps = expand_presets(parse_pipeline("canonicalize"))
    names = [s.name for s in steps]
    assert names[0] == "inputs_to_initializers" and "fixpoint" in names


def test_issue_example_pipeline_parses_and_round_trips() -> None:
    text = "canonicalize,fixpoint(fold_constants,eliminate_dead),prune(ratio=0.3)"
    steps = parse_pipeline(text)
    assert format_pipeline(steps) == text
    assert parse_pipeline(format_pipeline(steps)) == steps
    assert steps[2].options_dict() == {"ratio": 0.3}
    expanded = expand_presets(steps[:2])
    assert [s.name for s in expanded][-1] == "fixpoint"


def test_canonicalize_cleans_if_branches() -> None:
    model, reference = model_from_text(IF_MODEL), model_from_text(IF_MODEL)
    _run(model)
    assert model.opset_imports[""] == 17
    # IR 4: w is an overridable default, kept as an input (frozen only when asked).
    assert [v.name for v in model.graph.inputs] == ["x", "c", "w"]
    if_node = next(n for n in model.graph if n.op_type == "If")
    then_ops = [n.op_type for n in if_node.attributes["then_branch"].as_graph()]
    else_ops = [n.op_type for n in if_node.attributes["else_branch"].as_graph()]
    assert sorted(then_ops) == ["Add", "Mul"]  # k2 folded, dead Exp and Identity gone
    assert else_ops == ["Relu", "Add"]  # Dropout gone, the two Relus merged
    assert [n.op_type for n in model.graph] == ["If"]  # the outer Identity is gone too
    for cond in (True, False):
        feeds = {"x": np.array([1.0, -2.0], np.float32), "c": np.array(cond)}
        assert_equivalent(reference, model, feeds=feeds)


def test_custom_domain_op_survives_untouched() -> None:
    model = model_from_text(CUSTOM)
    original = next(n for n in model.graph if n.domain == "com.example")
    attrs = {k: v.value for k, v in original.attributes.items()}
    _run(model, allow_custom_ops=True)
    custom = [n for n in model.graph if n.domain == "com.example"]
    assert len(custom) == 1
    node = custom[0]
    assert node.op_type == "Fancy"
    assert {k: v.value for k, v in node.attributes.items()} == attrs
    assert node.inputs[0] is model.graph.inputs[0]  # the Identity before it is gone
    assert node.inputs[1].const_value.numpy().tolist() == [2.0, 4.0, 6.0]  # Add folded
    assert [n.op_type for n in model.graph] == ["Fancy", "Relu"]
    assert model.opset_imports["com.example"] == 1


def test_second_run_changes_nothing() -> None:
    model = _run(model_from_text(IF_MODEL))
    result = PipelineRunner("canonicalize", options=RunOptions(verify="none")).run(model)
    assert not any(p.modified for p in result.report.passes if p.name != "infer_shapes")


@pytest.mark.parametrize("opset", [7, 9, 12])
def test_legacy_opset_is_upgraded_by_the_preset(opset: int) -> None:
    text = f"""
    <ir_version: 4, opset_import: ["" : {opset}]>
    g (float[1,3,4,4] x) => (float[1,3,4,4] y) {{
      y = Relu (x)
    }}
    """
    model = _run(model_from_text(text))
    assert model.opset_imports[""] == 17


LOOP_MODEL = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[2] x) => (float[2] y) <int64 trip = {3}, bool keep = {1}> {
  y = Loop (trip, keep, x) <body = body_g (int64 i, bool c_in, float[2] y_in)
                                       => (bool c_out, float[2] y_out) {
        k = Constant <value = float[2] {1.0, 0.5}> ()
        k2 = Add (k, k)
        dead = Exp (y_in)
        c_out = Identity (c_in)
        t = Identity (y_in)
        y_out = Add (t, k2)
     }>
}
"""


def test_canonicalize_cleans_loop_bodies() -> None:
    model, reference = model_from_text(LOOP_MODEL), model_from_text(LOOP_MODEL)
    _run(model)
    loop = next(n for n in model.graph if n.op_type == "Loop")
    body_ops = [n.op_type for n in loop.attributes["body"].as_graph()]
    # c_out = Identity(c_in) maps a body input to a body output: it must stay
    assert sorted(body_ops) == ["Add", "Identity"]
    assert_equivalent(reference, model)
