from __future__ import annotations

import numpy as np
import pytest

from irpass.testing import model_from_text
from irpass.verify import make_session, run_model
from irpass.verify.feeds import find_feeds, input_hints

HEADER = '<ir_version: 8, opset_import: ["" : 18]>\n'

#: (graph, operand input, the value the rule must derive). Each graph is a single consumer
#: whose operand is a graph input; random integers make ONNX Runtime refuse all of them.
PINNED = {
    "reshape_to_declared": (
        "g (float[2,3,4] x, int64[3] s) => (float[4,2,3] y) { y = Reshape (x, s) }",
        "s",
        [4, 2, 3],
    ),
    "reshape_identity_without_declared_output": (
        "g (float[2,3,4] x, int64[3] s) => (float[?,?,?] y) { y = Reshape (x, s) }",
        "s",
        [2, 3, 4],
    ),
    "reshape_other_rank": (
        "g (float[2,3,4] x, int64[2] s) => (float[?,?] y) { y = Reshape (x, s) }",
        "s",
        [1, -1],
    ),
    "expand": (
        "g (float[3,1] x, int64[3] s) => (float[2,3,6] y) { y = Expand (x, s) }",
        "s",
        [2, 3, 6],
    ),
    "tile": (
        "g (float[2,3] x, int64[2] r) => (float[4,9] y) { y = Tile (x, r) }",
        "r",
        [2, 3],
    ),
    "resize_scales": (
        "g (float[1,1,4,4] x, float[4] s) => (float[1,1,2,8] y) "
        '{ y = Resize <mode = "linear"> (x, , s) }',
        "s",
        [1.0, 1.0, 0.5, 2.0],
    ),
    "resize_sizes": (
        "g (float[1,1,4,4] x, int64[4] s) => (float[1,1,3,5] y) { y = Resize (x, , , s) }",
        "s",
        [1, 1, 3, 5],
    ),
    "resize_roi": (
        "g (float[1,1,4,4] x, float[8] roi, int64[4] s) => (float[1,1,3,5] y) "
        '{ y = Resize <coordinate_transformation_mode = "tf_crop_and_resize"> (x, roi, , s) }',
        "roi",
        [0, 0, 0, 0, 1, 1, 1, 1],
    ),
    "resize_sizes_on_axes": (
        "g (float[1,1,4,4] x, int64[2] s) => (float[1,1,3,5] y) "
        "{ y = Resize <axes = [2, 3]> (x, , , s) }",
        "s",
        [3, 5],
    ),
    "split_declared": (
        "g (float[6] x, int64[2] s) => (float[2] a, float[4] b) { a, b = Split (x, s) }",
        "s",
        [2, 4],
    ),
    "split_even": (
        "g (float[7] x, int64[2] s) => (float[?] a, float[?] b) { a, b = Split (x, s) }",
        "s",
        [3, 4],
    ),
    "squeeze": (
        "g (float[1,3,1,5] x, int64[2] a) => (float[3,5] y) { y = Squeeze (x, a) }",
        "a",
        [0, 2],
    ),
    "unsqueeze": (
        "g (float[3,5] x, int64[2] a) => (float[3,1,5,1] y) { y = Unsqueeze (x, a) }",
        "a",
        [1, 3],
    ),
    "reduce_keepdims": (
        "g (float[3,2,2] x, int64[1] a) => (float[3,1,2] y) { y = ReduceSum (x, a) }",
        "a",
        [1],
    ),
    "reduce_dropdims": (
        "g (float[3,2,2] x, int64[1] a) => (float[3,2] y) { y = ReduceMax <keepdims = 0> (x, a) }",
        "a",
        [1],
    ),
    "slice_axes": (
        "g (float[3,4] x, int64[2] b, int64[2] e, int64[2] a) => (float[?,?] y) "
        "{ y = Slice (x, b, e, a) }",
        "a",
        [0, 1],
    ),
    "pad_declared": (
        'g (float[2,3] x, int64[4] p) => (float[4,3] y) { y = Pad <mode = "reflect"> (x, p) }',
        "p",
        [1, 0, 1, 0],
    ),
    "constant_of_shape": (
        "g (int64[3] s) => (float[2,1,4] y) { y = ConstantOfShape (s) }",
        "s",
        [2, 1, 4],
    ),
    "affine_grid": (
        '<ir_version: 9, opset_import: ["" : 20]>\n'
        "g (float[2,2,3] t, int64[4] s) => (float[2,5,6,2] y) { y = AffineGrid (t, s) }",
        "s",
        [2, 1, 5, 6],
    ),
    "col2im": (
        "g (float[1,5,5] x, int64[2] i, int64[2] b) => (float[1,1,5,5] y) { y = Col2Im (x, i, b) }",
        "b",
        [1, 5],
    ),
    "max_unpool": (
        "g (float[1,1,2,2] x, int64[1,1,2,2] i, int64[4] s) => (float[1,1,5,5] y) "
        "{ y = MaxUnpool <kernel_shape = [2, 2], strides = [2, 2]> (x, i, s) }",
        "s",
        [1, 1, 5, 5],
    ),
}


def _plan(text: str):
    model = model_from_text(text)
    session = make_session(model)
    return model, find_feeds(model, lambda feed: run_model(session, feed))


@pytest.mark.parametrize("name", sorted(PINNED))
def test_operand_takes_the_value_the_graph_implies(name: str) -> None:
    text, operand, expected = PINNED[name]
    text = text if text.startswith("<") else HEADER + text
    model = model_from_text(text)
    hint = input_hints(model)[operand]
    assert hint.value is not None and hint.reasons
    np.testing.assert_allclose(hint.value, expected)
    _, plan = _plan(text)
    for feed in plan.feeds:
        np.testing.assert_allclose(feed[operand], expected)


@pytest.mark.parametrize(
    ("text", "operand", "low", "high"),
    [
        ("g (float[3,4] x, int64 a) => (float[3,4] y) { y = CumSum (x, a) }", "a", -2, 2),
        (
            "g (float[3,4] x, int64[2] b, int64[2] e, int64[2] a, int64[2] s) => (float[?,?] y) "
            "{ y = Slice (x, b, e, a, s) }",
            "s",
            1,
            3,
        ),
        (
            "g (float[3,6] x, int64 s) => (seq(float[3,?]) y) "
            "{ y = SplitToSequence <axis = 1> (x, s) }",
            "s",
            1,
            7,
        ),
    ],
)
def test_operand_range_keeps_the_model_running(
    text: str, operand: str, low: int, high: int
) -> None:
    model = model_from_text(HEADER + text)
    hint = input_hints(model)[operand]
    assert (hint.low, hint.high) == (low, high)
    _, plan = _plan(HEADER + text)
    for feed in plan.feeds:
        assert np.all((low <= feed[operand]) & (feed[operand] < high))


def test_dft_axis_and_length_pick_a_signal_axis() -> None:
    text = (
        '<ir_version: 9, opset_import: ["" : 20]>\n'
        "g (float[1,10,10,1] x, int64 n, int64 a) => (float[1,10,10,2] y) { y = DFT (x, n, a) }"
    )
    hints = input_hints(model_from_text(text))
    assert int(hints["a"].value) == 1 and int(hints["n"].value) == 10
    _, plan = _plan(text)
    assert plan.feeds


def test_without_declared_shapes_nothing_is_pinned() -> None:
    text = HEADER + "g (float[?,?] x, int64[?] s) => (float[?] y) { y = Reshape (x, s) }"
    assert input_hints(model_from_text(text))["s"].value is None
