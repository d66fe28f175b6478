from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest

from irpass.ir import load_model
from irpass.manager import PipelineRunner, RunOptions
from irpass.passes.legalize.fix_input_shapes import (
    FixInputShapesPass,
    format_shape_spec,
    parse_shape_spec,
)
from irpass.testing import model_from_text, run_ir
from models import zoo_paths


def _fix(model: ir.Model, *shapes: str) -> FixInputShapesPass:
    p = FixInputShapesPass(FixInputShapesPass.Options(shapes=shapes))
    p(model)
    return p


def test_spec_round_trips():
    assert parse_shape_spec("images:1x3x320x320") == ("images", (1, 3, 320, 320))
    assert parse_shape_spec("ns:scope:x:2") == ("ns:scope:x", (2,))
    assert format_shape_spec("x", (1, 3)) == "x:1x3"
    for bad in ("x", ":1x2", "x:1xa", "x:-1"):
        with pytest.raises(ValueError):
            parse_shape_spec(bad)


def test_symbolic_dims_are_fixed_everywhere_and_shape_chains_fold():
    model = load_model(zoo_paths()["transformer"])
    tokens = np.random.default_rng(0).integers(0, 128, (1, 16)).astype(np.int64)
    expected = run_ir(model, {"tokens": tokens})["logits"]
    p = _fix(model, "tokens:1x16")
    assert p.stats["inputs"] == 1 and p.stats["values"] >= 1
    assert list(model.graph.inputs[0].shape) == [1, 16]
    assert list(model.graph.outputs[0].shape) == [1, 4]
    PipelineRunner("canonicalize", options=RunOptions(verify="each")).run(model)
    assert "Shape" not in {n.op_type for n in model.graph}
    np.testing.assert_allclose(run_ir(model, {"tokens": tokens})["logits"], expected, rtol=1e-5)


def test_dims_shared_between_inputs_take_one_value():
    m = model_from_text("""
    <ir_version: 9, opset_import: ["" : 17]>
    g (float[N,4] a, float[N,4] b) => (float[N,4] y) {
      y = Add(a, b)
    }""")
    _fix(m, "a:2x4")
    assert [list(v.shape) for v in (*m.graph.inputs, *m.graph.outputs)] == [[2, 4]] * 3
    with pytest.raises(ValueError, match="given both"):
        m2 = model_from_text("""
        <ir_version: 9, opset_import: ["" : 17]>
        g (float[N,4] a, float[N,4] b) => (float[N,4] y) { y = Add(a, b) }""")
        _fix(m2, "a:2x4", "b:3x4")


@pytest.mark.parametrize(
    "spec, message",
    [("x:1x5", "dim 1 is 4"), ("x:1x4x1", "rank 2"), ("nope:1x4", "no input 'nope'")],
)
def test_contradictions_are_errors_and_change_nothing(spec, message):
    m = model_from_text("""
    <ir_version: 9, opset_import: ["" : 17]>
    g (float[N,4] x) => (float[N,4] y) { y = Relu(x) }""")
    before = ir.to_proto(m).SerializeToString()
    with pytest.raises(ValueError, match=message):
        _fix(m, spec)
    assert ir.to_proto(m).SerializeToString() == before


def test_already_fixed_input_is_not_modified():
    m = model_from_text("""
    <ir_version: 9, opset_import: ["" : 17]>
    g (float[1,4] x) => (float[1,4] y) { y = Relu(x) }""")
    p = FixInputShapesPass(FixInputShapesPass.Options(shapes=("x:1x4",)))
    assert p(m).modified is False
