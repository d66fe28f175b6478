"""Measured layer sensitivity steers the ratio allocation (passes/lowrank/sensitivity.py)."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest
from lowrank_testlib import (
    build,
    clone,
    relative_error,
    run_pass,
    single_blas_thread,  # noqa: F401  (autouse fixture)
)

from irpass.passes.lowrank.sensitivity import measure_sensitivities
from irpass.passes.lowrank.svd import SvdPass

# Two branches with the same weight and the same input: their own spectra and errors are
# identical, but branch a reaches the output 100x louder than branch b.
TWO_BRANCHES = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[N, 32] x, float[32, 32] wa, float[32, 32] wb, float[1] ka, float[1] kb)
    => (float[N, 32] y) {
    a = MatMul(x, wa)
    b = MatMul(x, wb)
    sa = Mul(a, ka)
    sb = Mul(b, kb)
    y = Add(sa, sb)
}
"""


def _decaying(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    u, _ = np.linalg.qr(rng.standard_normal((n, n)))
    v, _ = np.linalg.qr(rng.standard_normal((n, n)))
    return (u * 0.8 ** np.arange(n)) @ v.T


def _model(scale_a: float = 10.0, scale_b: float = 0.1) -> ir.Model:
    w = _decaying(32, 0).astype(np.float32)
    return build(TWO_BRANCHES, {"wa": w, "wb": w.copy(),
                                "ka": np.array([scale_a], np.float32),
                                "kb": np.array([scale_b], np.float32)})


CALIB = {"x": np.random.default_rng(1).standard_normal((256, 32)).astype(np.float32)}


def _ranks(instance: SvdPass) -> dict[str, int]:
    return {entry["weight"]: entry["rank"] for entry in instance.details["layers"]}


def _sensitivity(instance: SvdPass) -> dict[str, float]:
    """Measured sensitivity by weight name."""
    names = {entry["name"]: entry["weight"] for entry in instance.details["layers"]}
    return {names[name]: value for name, value in instance.details["sensitivity"].items()}


def test_the_louder_branch_keeps_more_rank_and_the_model_error_falls() -> None:
    # options per layer (round_to=4, min_saving 0.2): ranks 4, 8, 12 (256/512/768 params) or
    # keep (1024); half of 2048 fits 8+8 or 12+4.
    reference = _model()
    with_sens, without = _model(), _model()
    _, measured = run_pass(SvdPass, with_sens, CALIB, ratio=0.5, round_to=4)
    _, blind = run_pass(SvdPass, without, CALIB, ratio=0.5, round_to=4, sensitivity=False)
    assert _ranks(blind) == {"wa": 8, "wb": 8}
    assert _ranks(measured) == {"wa": 12, "wb": 4}
    sensitivity = _sensitivity(measured)
    assert sensitivity["wa"] > 100 * sensitivity["wb"]
    assert "sensitivity" not in blind.details
    feeds = {"x": np.random.default_rng(2).standard_normal((64, 32)).astype(np.float32)}
    assert relative_error(reference, with_sens, feeds) < relative_error(reference, without, feeds)


def test_equal_branches_get_equal_sensitivity_and_plain_svd_measures_none() -> None:
    _, measured = run_pass(SvdPass, _model(1.0, 1.0), CALIB, ratio=0.5, round_to=4)
    sensitivity = _sensitivity(measured)
    assert sensitivity["wa"] == pytest.approx(sensitivity["wb"], rel=1e-3)
    assert _ranks(measured) == {"wa": 8, "wb": 8}
    _, plain = run_pass(SvdPass, _model(), None, ratio=0.5, round_to=4)
    assert "sensitivity" not in plain.details


def test_probes_leave_the_model_alone_and_zero_error_layers_get_the_mean() -> None:
    model = _model()
    before = clone(model)

    def scale_output_of(name: str, factor: float):
        def rewrite(copy: ir.Model) -> None:
            value = copy.graph.initializers[name]
            array = value.const_value.numpy() * factor
            value.const_value = ir.tensor(array.astype(np.float32), name=name)
        return rewrite

    source = lambda: iter([CALIB])  # noqa: E731  (a FeedSource)
    found = measure_sensitivities(model, [
        # y = 10.1 a; ka * 1.1 moves it by 1 a: model error (1 / 10.1)^2, over 0.01
        ("a", 0.01, scale_output_of("ka", 1.1)),
        # kb * 1.1 moves it by 0.01 a: 1e-4 of a's, below the floor (a thousandth of a's)
        ("b", 0.01, scale_output_of("kb", 1.1)),
        ("c", 0.0, scale_output_of("ka", 2.0)),  # no layer error: not measured, the mean
    ], source)
    assert found["a"] == pytest.approx((1 / 10.1) ** 2 / 0.01, rel=1e-3)
    assert found["b"] == pytest.approx(1e-3 * found["a"])
    assert found["c"] == pytest.approx((found["a"] + found["b"]) / 2)
    assert ir.to_proto(model) == ir.to_proto(before)
