from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest

from irpass.passes.canonicalize.merge_concats import MergeConcatsPass
from irpass.testing import assert_equivalent, assert_unchanged, model_from_text, serialized

HEADER = '<ir_version: 8, opset_import: ["" : 17]>\n'
SIG = "g (float[1,2,4,4] x, float[1,3,4,4] y, float[1,1,4,4] z) => (float[1,{c},4,4] out)"

MERGED = {
    "two_levels": (
        "{ a = Concat <axis = 1> (x, y)\n out = Concat <axis = 1> (a, z) }",
        6,
        1,
    ),
    "inner_last": (
        "{ a = Concat <axis = 1> (y, z)\n out = Concat <axis = 1> (x, a) }",
        6,
        1,
    ),
    "three_levels": (
        "{ a = Concat <axis = 1> (x, y)\n b = Concat <axis = 1> (a, z)\n"
        " out = Concat <axis = 1> (b, x) }",
        8,
        2,
    ),
    "negative_axis": (
        "{ a = Concat <axis = -3> (x, y)\n out = Concat <axis = 1> (a, z) }",
        6,
        1,
    ),
}

KEPT = {
    "other_axis": (
        "g (float[1,2,4,4] x, float[1,2,4,4] y) => (float[1,4,8,4] out) "
        "{ a = Concat <axis = 2> (x, y)\n out = Concat <axis = 1> (a, a) }"
    ),
    "shared_inner": (
        "g (float[1,2,4,4] x, float[1,2,4,4] y) => (float[1,8,4,4] out) "
        "{ a = Concat <axis = 1> (x, y)\n b = Relu (a)\n out = Concat <axis = 1> (a, b) }"
    ),
    "inner_is_output": (
        "g (float[1,2,4,4] x, float[1,2,4,4] y) => (float[1,4,4,4] a, float[1,6,4,4] out) "
        "{ a = Concat <axis = 1> (x, y)\n out = Concat <axis = 1> (a, x) }"
    ),
}


@pytest.mark.parametrize("name", sorted(MERGED))
def test_nested_concats_merge(name: str) -> None:
    body, channels, merged = MERGED[name]
    text = HEADER + SIG.format(c=channels) + body
    model, reference = model_from_text(text), model_from_text(text)
    pass_ = MergeConcatsPass()
    assert pass_(model).modified is True
    assert [n.op_type for n in model.graph] == ["Concat"]
    assert [v.name for v in model.graph.outputs] == ["out"]
    assert pass_.stats["concats_merged"] == merged
    assert_equivalent(reference, model)


@pytest.mark.parametrize("name", sorted(KEPT))
def test_leaves_concats_that_cannot_merge(name: str) -> None:
    model = model_from_text(HEADER + KEPT[name])
    before = serialized(model)
    assert MergeConcatsPass()(model).modified is False
    assert_unchanged(before, model)


def test_merges_in_if_branches() -> None:
    text = (
        HEADER
        + """
    g (float[2] x, bool c) => (float[6] y) {
      y = If (c) <then_branch = t () => (float[6] ty) {
            a = Concat <axis = 0> (x, x)
            ty = Concat <axis = 0> (a, x)
         }, else_branch = e () => (float[6] ey) {
            ey = Concat <axis = 0> (x, x, x)
         }>
    }
    """
    )
    model, reference = model_from_text(text), model_from_text(text)
    assert MergeConcatsPass()(model).modified is True
    then_branch = next(iter(model.graph)).attributes["then_branch"].as_graph()
    assert [n.op_type for n in then_branch] == ["Concat"]
    for cond in (True, False):
        feeds = {"x": np.array([1.0, -2.0], np.float32), "c": np.array(cond)}
        assert_equivalent(reference, model, feeds=feeds)


def test_runs_inside_onnx_ir_pass_manager() -> None:
    body, channels, _ = MERGED["two_levels"]
    model = model_from_text(HEADER + SIG.format(c=channels) + body)
    assert ir.passes.PassManager([MergeConcatsPass()])(model).modified is True
