"""Importance scores on a tiny conv -> BN -> conv graph with known weights."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
from pruning_testlib import build, group_with

from irpass.analysis.channels import analyze_channels
from irpass.data import ArraySource
from irpass.passes.pruning.importance import (
    ActivationImportance,
    BNScaleImportance,
    MagnitudeImportance,
    channel_energy,
)

TEXT = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[N, 2, 3, 3] x, float[3, 2, 1, 1] w1, float[3] s, float[3] b, float[3] m, float[3] v,
   float[1, 3, 1, 1] w2) => (float[N, 1, 3, 3] y) {
    c = Conv (x, w1)
    n = BatchNormalization (c, s, b, m, v)
    y = Conv (n, w2)
}
"""


def _model() -> ir.Model:
    model = build(TEXT, ["w1", "s", "b", "m", "v", "w2"])
    values = {
        "w1": np.array([[1, 1], [2, 0], [0, 3]], np.float32).reshape(3, 2, 1, 1),
        "s": np.array([0.5, -4.0, 1.0], np.float32),
        "v": np.ones(3, np.float32),
        "w2": np.array([1.0, 1.0, 0.5], np.float32).reshape(1, 3, 1, 1),
    }
    for name, array in values.items():
        model.graph.initializers[name].const_value = ir.tensor(array, name=name)
    return model


def test_l2_sums_producer_rows_and_consumer_columns() -> None:
    model = _model()
    group = group_with(analyze_channels(model), "w1", -4)
    scores = MagnitudeImportance(2).score(group)
    # channel c: |W1[c]|^2 + |W2[:, c]|^2 + gamma[c]^2
    np.testing.assert_allclose(scores, [2 + 1 + 0.25, 4 + 1 + 16, 9 + 0.25 + 1])


def test_l1_uses_absolute_values() -> None:
    group = group_with(analyze_channels(_model()), "w1", -4)
    np.testing.assert_allclose(
        MagnitudeImportance(1).score(group), [2 + 1 + 0.5, 2 + 1 + 4, 3 + 0.5 + 1]
    )


def test_bn_scale_is_the_absolute_gamma() -> None:
    group = group_with(analyze_channels(_model()), "w1", -4)
    scorer = BNScaleImportance()
    np.testing.assert_allclose(scorer.score(group), [0.5, 4.0, 1.0])
    assert scorer.fallbacks == 0


def test_activation_importance_weighs_the_consumer_by_the_input_energy() -> None:
    model = _model()
    analysis = analyze_channels(model)
    group = group_with(analysis, "w1", -4)
    x = np.random.default_rng(0).standard_normal((8, 2, 3, 3)).astype(np.float32)
    energy = channel_energy(model, group.axes_with_role("act_in"), ArraySource({"x": x}))
    scorer = ActivationImportance(energy)
    scores = scorer.score(group)
    n = energy[("n", -3)]
    np.testing.assert_allclose(scores, np.array([1.0, 1.0, 0.5]) * np.sqrt(n), rtol=1e-6)
    assert scorer.fallbacks == 0
