from __future__ import annotations

import numpy as np
import pytest

from irpass.testing import model_from_text
from irpass.verify import make_session, run_model
from irpass.verify.feeds import find_feeds, input_hints

HEADER = '<ir_version: 8, opset_import: ["" : 18]>\n'

#: (graph, operand, allowed range [low, high)): random values make ONNX Runtime refuse them.
RANGES = {
    "scatter_elements": (
        "g (float[3,3] d, int64[2,3] i, float[2,3] u) => (float[3,3] y) "
        "{ y = ScatterElements <axis = 0> (d, i, u) }",
        "i",
        0,
        3,
    ),
    "scatter_nd": (
        "g (float[2,5] d, int64[3,1] i, float[3,5] u) => (float[2,5] y) "
        "{ y = ScatterND (d, i, u) }",
        "i",
        0,
        2,
    ),
    "lstm_sequence_lens": (
        "g (float[1,2,4] x, float[1,12,4] w, float[1,12,3] r, float[1,24] b, int32[2] n) "
        "=> (float[1,1,2,3] y) { y = LSTM <hidden_size = 3> (x, w, r, b, n) }",
        "n",
        1,
        2,
    ),
    "dropout_ratio": (
        "g (float[4] x, float r) => (float[4] y) { y = Dropout (x, r) }",
        "r",
        0.0,
        0.9,
    ),
    "nms_iou": (
        "g (float[1,6,4] b, float[1,1,6] s, int64[1] m, float[1] iou, float[1] t) "
        "=> (int64[?,3] y) { y = NonMaxSuppression (b, s, m, iou, t) }",
        "iou",
        0.0,
        1.0,
    ),
    "tensor_scatter": (
        '<ir_version: 11, opset_import: ["" : 24]>\n'
        "g (float[3,4,5] c, float[3,2,5] u, int64[3] w) => (float[3,4,5] y) "
        "{ y = TensorScatter (c, u, w) }",
        "w",
        0,
        3,
    ),
}


@pytest.mark.parametrize("name", sorted(RANGES))
def test_operand_stays_in_the_range_the_consumer_accepts(name: str) -> None:
    text, operand, low, high = RANGES[name]
    text = text if text.startswith("<") else HEADER + text
    model = model_from_text(text)
    hint = input_hints(model)[operand]
    assert (hint.low, hint.high) == (low, high) and hint.reasons
    session = make_session(model)
    plan = find_feeds(model, lambda feed: run_model(session, feed))
    for feed in plan.feeds:
        assert np.all((low <= feed[operand]) & (feed[operand] < high))


def test_one_hot_depth_is_the_declared_one() -> None:
    text = HEADER + (
        "g (int64[3] i, float[1] d, float[2] v) => (float[3,10] y) { y = OneHot (i, d, v) }"
    )
    hint = input_hints(model_from_text(text))["d"]
    assert hint.value is not None and hint.value.tolist() == [10]


def test_dropout_is_verified_in_inference_mode() -> None:
    text = HEADER + "g (float[4] x, float r, bool t) => (float[4] y) { y = Dropout (x, r, t) }"
    assert input_hints(model_from_text(text))["t"].choices == (False,)
