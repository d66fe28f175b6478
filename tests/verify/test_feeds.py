from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest

from irpass.errors import DataError, UnsupportedModelError
from irpass.testing import model_from_text
from irpass.verify import make_session, run_model
from irpass.verify.feeds import (
    ValueHint,
    find_feeds,
    input_hints,
    input_specs,
    make_feeds,
    parse_input_shapes,
    register_value_rule,
)

# token ids index a 2-row table (BERT's token_type_ids); random ints in [0, 4) break it
EMBEDDING = """
<ir_version: 8, opset_import: ["" : 17]>
g (int64[batch, seq] ids) => (float[batch, seq, 3] y)
  <float[2, 3] table = {1, 2, 3, 4, 5, 6}> {
    idx = Cast <to = 7> (ids)
    y = Gather <axis = 0> (table, idx)
}
"""

# reflect padding needs more than `pad` samples on the sample axis
REFLECT_PAD = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[batch, samples] audio) => (float[batch, out] y) <int64[4] pads = {0, 64, 0, 64}> {
    y = Pad <mode = "reflect"> (audio, pads)
}
"""

# a stride-2 branch upsampled back and concatenated: odd or tiny H/W do not line up
RESIZE = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[batch, 3, height, width] images) => (float[batch, 6, h2, w2] y)
  <float[3, 3, 1, 1] w = {1,0,0, 0,1,0, 0,0,1}, float[4] scales = {1, 1, 2, 2}> {
    down = Conv <strides = [2, 2]> (images, w)
    up = Resize <mode = "nearest"> (down, , scales)
    y = Concat <axis = 1> (images, up)
}
"""

# a scalar picks a branch; only the compared value selects a branch that runs
IF_SCALAR = """
<ir_version: 8, opset_import: ["" : 17]>
g (int64 sr, float[1, 4] x) => (float[1, 4] y) <int64 k16 = {16000}> {
    is16 = Equal (sr, k16)
    y = If (is16) <
        then_branch = t () => (float[1, 4] a) { a = Relu (x) },
        else_branch = e () => (float[1, 4] b) {
            s = Constant <value_ints = [9]> ()
            b = Reshape (x, s)
        }
    >
}
"""


def _plan(text: str, **kwargs):
    model = model_from_text(text)
    session = make_session(model)
    return model, find_feeds(model, lambda feed: run_model(session, feed), **kwargs)


def test_embedding_indices_stay_within_the_table() -> None:
    model = model_from_text(EMBEDDING)
    hint = input_hints(model)["ids"]
    assert (hint.low, hint.high) == (0, 2)
    assert "table" in hint.reasons[0]
    _, plan = _plan(EMBEDDING)
    assert len(plan.feeds) == 2
    for feed in plan.feeds:
        assert feed["ids"].dtype == np.int64 and set(np.unique(feed["ids"])) <= {0, 1}


def test_two_configurations_batch_one_and_more_and_two_seeds() -> None:
    _, plan = _plan(EMBEDDING)
    (a, b) = plan.shapes
    assert a["ids"][0] == 1 and b["ids"][0] > 1  # batch 1, then batch > 1
    assert a["ids"][1] != b["ids"][1]  # a second value for the other symbolic dim
    assert plan.configs[0] == {"batch": 1, "seq": 1}
    # the reference outputs come with the plan (no second run of the input model)
    assert plan.outputs[1]["y"].shape == (b["ids"][0], b["ids"][1], 3)


def test_reflect_pad_gets_a_sample_axis_of_a_few_hundred() -> None:
    _, plan = _plan(REFLECT_PAD)
    sizes = [shapes["audio"][1] for shapes in plan.shapes]
    assert sizes[0] > 64 and sizes[1] > 64
    assert plan.shapes[1]["audio"][0] > 1


def test_resize_on_symbolic_height_width_uses_stride_multiples() -> None:
    _, plan = _plan(RESIZE)
    height, width = plan.shapes[0]["images"][2:]
    assert height == width and height > 1 and height % 2 == 0
    assert plan.shapes[1]["images"][0] == 2


def test_if_condition_scalar_takes_the_compared_value() -> None:
    model = model_from_text(IF_SCALAR)
    assert input_hints(model)["sr"].choices == (16000,)
    _, plan = _plan(IF_SCALAR)
    assert all(int(feed["sr"]) == 16000 for feed in plan.feeds)
    assert len(plan.feeds) == 2  # static shapes: one configuration, two seeds
    assert not np.array_equal(plan.feeds[0]["x"], plan.feeds[1]["x"])


def test_bool_if_condition_input_exercises_both_branches() -> None:
    text = """
    <ir_version: 8, opset_import: ["" : 17]>
    g (bool c, float[2] x) => (float[2] y) {
        y = If (c) <
            then_branch = t () => (float[2] a) { a = Relu (x) },
            else_branch = e () => (float[2] b) { b = Neg (x) }
        >
    }
    """
    _, plan = _plan(text)
    assert {bool(feed["c"]) for feed in plan.feeds} == {True, False}


def test_integer_divisor_is_never_zero() -> None:
    text = """
    <ir_version: 8, opset_import: ["" : 17]>
    g (int64[64] a, int64[64] b) => (int64[64] y) { y = Div (a, b) }
    """
    model = model_from_text(text)
    feeds = make_feeds(input_specs(model), {}, seed=0)
    assert np.all(feeds["b"] != 0)
    _, plan = _plan(text)
    assert len(plan.feeds) == 2


def test_registered_rule_extends_the_hints() -> None:
    text = """
    <ir_version: 8, opset_import: ["" : 17]>
    g (int64[2] k, float[8] x) => (float[k1] y) {
        y, z = TopK (x, k)
    }
    """
    model = model_from_text(text)
    assert input_hints(model)["k"].high is None

    def topk_rule(node: ir.Node, index: int) -> ValueHint | None:
        return ValueHint(low=1, high=9, reasons=["TopK k"]) if index == 1 else None

    register_value_rule("TopK", topk_rule)
    try:
        hint = input_hints(model)["k"]
        assert (hint.low, hint.high) == (1, 9)
    finally:
        from irpass.verify import feeds

        feeds._RULES["TopK"].remove(topk_rule)


def test_input_shapes_override_the_search_and_add_a_larger_batch() -> None:
    model = model_from_text(RESIZE)
    shapes = parse_input_shapes("images:1x3x32x48", model)
    assert shapes == {"images": (1, 3, 32, 48)}
    _, plan = _plan(RESIZE, input_shapes=[shapes])
    assert plan.shapes[0]["images"] == (1, 3, 32, 48)
    assert plan.shapes[1]["images"] == (2, 3, 32, 48)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("nope:1x3", "not an input"),
        ("images:1x3x32", "does not fit"),
        ("images:1x4x32x32", "fixes it to 3"),
        ("images:1xAx32x32", "not a list of integers"),
        ("images", "NAME:DIM"),
    ],
)
def test_input_shapes_errors_name_the_input(text: str, message: str) -> None:
    model = model_from_text(RESIZE)
    with pytest.raises(DataError) as info:
        parse_input_shapes(text, model)
    assert message in info.value.message


def test_model_that_runs_on_nothing_names_the_input_and_suggests_flags() -> None:
    # Reshape to a fixed 7 elements: no generated size of `n` works
    text = """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[len] x) => (float[7] y) <int64[1] s = {7}> { y = Reshape (x, s) }
    """
    with pytest.raises(UnsupportedModelError) as info:
        _plan(text)
    message = info.value.message
    assert "input 'x' [len]" in message and "len in [1, 256, 512]" in message
    assert "--input-shapes x:N" in (info.value.hint or "")
    assert "--verify-data" in (info.value.hint or "")
