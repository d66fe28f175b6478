"""Generated feeds for inputs that are not plain numeric tensors: strings, sequences, optionals."""

from __future__ import annotations

import ml_dtypes
import numpy as np

from irpass.testing import model_from_text
from irpass.verify import make_session, run_model
from irpass.verify.feeds import SEQUENCE_LENGTH, find_feeds, input_specs, make_feeds


def _plan(text: str):
    model = model_from_text(text)
    session = make_session(model)
    return find_feeds(model, lambda feed: run_model(session, feed))


def test_string_inputs_get_words() -> None:
    text = """
    <ir_version: 9, opset_import: ["" : 20]>
    g (string[3] x) => (string[3] y) { y = StringConcat (x, x) }
    """
    plan = _plan(text)
    assert len(plan.feeds) == 2
    feed = plan.feeds[0]["x"]
    assert feed.dtype == object and all(isinstance(v, str) for v in feed)
    assert plan.outputs[0]["y"].tolist() == [v + v for v in feed]


def test_sequence_inputs_are_lists_of_tensors() -> None:
    text = """
    <ir_version: 8, opset_import: ["" : 17]>
    g (seq(float[3]) s) => (float[?] y) { y = ConcatFromSequence <axis = 0> (s) }
    """
    model = model_from_text(text)
    (spec,) = input_specs(model)
    assert spec.containers == ("sequence",) and spec.dims == [3]
    feed = make_feeds([spec], {}, seed=0)["s"]
    assert isinstance(feed, list) and len(feed) == SEQUENCE_LENGTH
    assert all(t.shape == (3,) and t.dtype == np.float32 for t in feed)
    plan = _plan(text)
    assert plan.outputs[0]["y"].shape == (3 * SEQUENCE_LENGTH,)


def test_optional_inputs_are_present_values() -> None:
    text = """
    <ir_version: 8, opset_import: ["" : 18]>
    g (optional(seq(float[2])) o) => (bool y) { y = OptionalHasElement (o) }
    """
    (spec,) = input_specs(model_from_text(text))
    assert spec.containers == ("optional", "sequence")
    plan = _plan(text)
    assert isinstance(plan.feeds[0]["o"], list)
    assert bool(plan.outputs[0]["y"]) is True


def test_narrow_types_get_feeds_in_their_range() -> None:
    text = """
    <ir_version: 13, opset_import: ["" : 25]>
    g (bfloat16[64] a, int2[64] b, float8e8m0[64] c) => (float[64] x, float[64] y, float[64] z) {
        x = Cast <to = 1> (a)
        y = Cast <to = 1> (b)
        z = Cast <to = 1> (c)
    }
    """
    plan = _plan(text)
    feed, out = plan.feeds[0], plan.outputs[0]
    assert feed["a"].dtype == ml_dtypes.bfloat16 and np.unique(out["x"]).size > 10
    assert set(out["y"].tolist()) <= {-2.0, -1.0, 0.0, 1.0} and len(set(out["y"].tolist())) > 1
    # exponent-only float8 holds no sign and no zero: all drawn values are positive and finite
    assert np.all(np.isfinite(out["z"])) and np.all(out["z"] > 0)
