from __future__ import annotations

import numpy as np
import pytest

from irpass.passes.canonicalize.merge_slices import MergeSlicesPass
from irpass.testing import assert_equivalent, model_from_text


def _model(inner: str, outer: str, extra: str = "") -> str:
    return f"""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[6, 10, 12] x{extra}) => (float[a, b, c] y) {{
        {inner}
        {outer}
    }}
    """


def _const(name: str, values: list[int]) -> str:
    return f"{name} = Constant <value_ints = {values}> ()"


@pytest.mark.parametrize(
    ("inner", "outer"),
    [
        # different axes: parameters concatenate
        (([1], [5], [0], [1]), ([2], [9], [1], [2])),
        # the same axis, steps 1: starts add, ends compose (and clamp)
        (([2], [10], [1], [1]), ([1], [4], [1], [1])),
        (([2], [10], [1], [1]), ([1], [100], [1], [1])),
        # an empty result stays empty
        (([2], [4], [2], [1]), ([5], [9], [2], [1])),
        # negative axis with known rank
        (([0], [3], [-1], [1]), ([1], [4], [0], [1])),
    ],
)
def test_slice_chains_merge_and_stay_equal(inner, outer) -> None:
    s1, e1, a1, t1 = inner
    s2, e2, a2, t2 = outer
    text = _model(
        " ".join([_const("s1", s1), _const("e1", e1), _const("a1", a1), _const("t1", t1)])
        + " m = Slice (x, s1, e1, a1, t1)",
        " ".join([_const("s2", s2), _const("e2", e2), _const("a2", a2), _const("t2", t2)])
        + " y = Slice (m, s2, e2, a2, t2)",
    )
    model, reference = model_from_text(text), model_from_text(text)
    result = MergeSlicesPass()(model)
    assert result.modified
    assert [n.op_type for n in model.graph if n.op_type == "Slice"] == ["Slice"]
    feeds = {"x": np.random.default_rng(0).standard_normal((6, 10, 12)).astype(np.float32)}
    assert_equivalent(reference, model, feeds=feeds)


@pytest.mark.parametrize(
    "case",
    ["shared_inner", "negative_start_same_axis", "step_same_axis", "dynamic_starts"],
)
def test_slices_that_cannot_merge_are_left_alone(case: str) -> None:
    inner = " ".join([_const("s1", [1]), _const("e1", [5]), _const("a1", [0])])
    outer = " ".join([_const("s2", [1]), _const("e2", [3]), _const("a2", [0])])
    inner_slice, outer_slice = "m = Slice (x, s1, e1, a1)", "y = Slice (m, s2, e2, a2)"
    extra = ""
    if case == "shared_inner":
        outer_slice += " z = Relu (m)"
    elif case == "negative_start_same_axis":
        outer = outer.replace("[1]", "[-3]", 1)
    elif case == "step_same_axis":
        inner += " " + _const("t1", [2])
        inner_slice = "m = Slice (x, s1, e1, a1, t1)"
    elif case == "dynamic_starts":
        extra = ", int64[1] start"
        outer_slice = "y = Slice (m, start, e2, a2)"
    text = _model(f"{inner} {inner_slice}", f"{outer} {outer_slice}", extra)
    model = model_from_text(text)
    assert MergeSlicesPass()(model).modified is False


def test_merges_inside_if_branches() -> None:
    text = """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[6, 10] x, bool c) => (float[a, b] y) {
        y = If (c) <
            then_branch = t () => (float[a, b] ty) {
                s1 = Constant <value_ints = [1]> ()
                e1 = Constant <value_ints = [5]> ()
                a1 = Constant <value_ints = [0]> ()
                m = Slice (x, s1, e1, a1)
                s2 = Constant <value_ints = [2]> ()
                e2 = Constant <value_ints = [8]> ()
                a2 = Constant <value_ints = [1]> ()
                ty = Slice (m, s2, e2, a2)
            },
            else_branch = e () => (float[a, b] ey) { ey = Identity (x) }
        >
    }
    """
    model, reference = model_from_text(text), model_from_text(text)
    assert MergeSlicesPass()(model).modified
    x = np.arange(60, dtype=np.float32).reshape(6, 10)
    assert_equivalent(reference, model, feeds={"x": x, "c": np.array(True)})
