from __future__ import annotations

import numpy as np
import pytest

from irpass.analysis.activations import iter_activations
from irpass.testing import model_from_text, run_ir

MODEL = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[N, 3] x) => (float[N, 2] y) <float[3, 2] w = {1.0, 2.0, 3.0, 4.0, 5.0, 6.0}> {
    h = MatMul(x, w)
    r = Relu(h)
    y = Neg(r)
}
"""


def _source(batches: list[np.ndarray]):
    return lambda: iter({"x": b} for b in batches)


def test_yields_the_named_intermediates_per_batch_without_changing_the_model() -> None:
    model = model_from_text(MODEL)
    before = [v.name for v in model.graph.outputs]
    rng = np.random.default_rng(0)
    batches = [rng.standard_normal((4, 3)).astype(np.float32) for _ in range(3)]
    seen = list(iter_activations(model, ["h", "r", "x"], _source(batches)))
    assert len(seen) == 3
    for batch, got in zip(batches, seen, strict=True):
        w = np.arange(1, 7, dtype=np.float32).reshape(3, 2)
        np.testing.assert_allclose(got["h"], batch @ w, rtol=1e-6)
        np.testing.assert_allclose(got["r"], np.maximum(batch @ w, 0), rtol=1e-6)
        np.testing.assert_array_equal(got["x"], batch)
        assert "y" not in got
    assert [v.name for v in model.graph.outputs] == before
    assert set(run_ir(model, {"x": batches[0]})) == {"y"}


def test_max_samples_cuts_the_last_batch_and_outputs_on_request() -> None:
    model = model_from_text(MODEL)
    batches = [np.ones((4, 3), np.float32)] * 3
    seen = list(iter_activations(model, ["h"], _source(batches), max_samples=6,
                                 include_outputs=True))
    assert [b["h"].shape[0] for b in seen] == [4, 2]
    assert all("y" in b for b in seen)


def test_unknown_names_and_initializers_are_errors() -> None:
    model = model_from_text(MODEL)
    with pytest.raises(ValueError, match="no value named 'nope'"):
        list(iter_activations(model, ["nope"], _source([np.ones((1, 3), np.float32)])))
    with pytest.raises(ValueError, match="initializer"):
        list(iter_activations(model, ["w"], _source([np.ones((1, 3), np.float32)])))


def test_graph_inputs_alone_come_from_the_feed_without_running_the_model() -> None:
    model = model_from_text(MODEL)
    batch = np.ones((2, 3), np.float32)
    (got,) = list(iter_activations(model, ["x"], _source([batch])))
    assert set(got) == {"x"}
    np.testing.assert_array_equal(got["x"], batch)
