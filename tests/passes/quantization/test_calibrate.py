import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from quant_testlib import build, gaussian_source

from irpass.errors import DataError
from irpass.passes.quantization.calibrate import (
    ChannelStats,
    TensorStats,
    calibrate,
    choose_range,
)
from irpass.passes.quantization.qparams import UINT8, activation_params, dequantize, quantize
from irpass.verify import make_session

CONV = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[N,2,H,W] x, float[4,2,3,3] w) => (float[N,4,H,W] y) {
  c = Conv<pads=[1,1,1,1]>(x, w)
  y = Relu(c)
}"""


def stats_of(*arrays: np.ndarray, bins: int = 4096) -> TensorStats:
    stats = TensorStats(bins)
    for array in arrays:
        stats.update(array)
    return stats


def quantization_mse(data: np.ndarray, lo: float, hi: float) -> float:
    params = activation_params(lo, hi, UINT8, symmetric=False)
    return float(np.mean((dequantize(quantize(data, params), params) - data) ** 2))


@settings(max_examples=30, deadline=None)
@given(
    st.lists(
        st.lists(st.floats(-1e3, 1e3, allow_nan=False, width=32), min_size=1, max_size=50),
        min_size=1,
        max_size=6,
    )
)
def test_minmax_is_exact_and_histogram_counts_every_value(batches):
    arrays = [np.asarray(b, dtype=np.float32) for b in batches]
    stats = stats_of(*arrays)
    everything = np.concatenate(arrays)
    assert stats.min == float(everything.min()) and stats.max == float(everything.max())
    assert stats.hist.sum() == stats.count == everything.size
    lo, hi = choose_range(stats, "minmax")
    assert lo == min(0.0, float(everything.min())) and hi == max(0.0, float(everything.max()))


def test_growing_window_equals_one_histogram_of_all_data():
    rng = np.random.default_rng(0)
    small = rng.uniform(-1, 1, 10_000).astype(np.float32)
    large = rng.uniform(-7, 7, 10_000).astype(np.float32)
    grown = stats_of(small, large, bins=64)
    first = float(np.abs(small).max())
    assert grown.edge == first * 8  # the first batch's window, doubled three times
    direct, _ = np.histogram(
        np.concatenate([small, large]), bins=64, range=(-grown.edge, grown.edge)
    )
    # equal up to the first batch's extreme value, which sat on its window's closed edge
    assert grown.hist.sum() == direct.sum() and np.abs(grown.hist - direct).sum() <= 2


def test_non_finite_values_are_counted_not_binned():
    stats = stats_of(np.array([1.0, np.nan, -2.0, np.inf], dtype=np.float32))
    assert stats.nonfinite == 2 and stats.count == 2 and (stats.min, stats.max) == (-2.0, 1.0)


def test_percentile_clips_rare_outliers_minmax_does_not():
    rng = np.random.default_rng(2)
    data = rng.standard_normal(100_000).astype(np.float32)
    data[:50] = 100.0  # 0.05 % outliers
    stats = stats_of(data)
    assert choose_range(stats, "minmax")[1] == 100.0
    lo, hi = choose_range(stats, "percentile", percentile=99.9)
    assert 2.0 < hi < 5.0 and -5.0 < lo < -2.0


def test_entropy_clips_heavy_tails_but_not_relu_outputs():
    rng = np.random.default_rng(3)
    heavy = stats_of(rng.standard_t(2, 200_000).astype(np.float32))
    lo, hi = choose_range(heavy, "entropy", symmetric=True)
    assert hi < 0.25 * heavy.max and lo == -hi
    relu = np.maximum(rng.standard_normal(200_000), 0).astype(np.float32)  # half exact zeros
    _, relu_hi = choose_range(stats_of(relu), "entropy")
    assert relu_hi > 0.6 * np.percentile(relu, 99.9)


@pytest.mark.parametrize("tail_df", [2, 4])
def test_mse_range_quantizes_with_less_error_than_minmax(tail_df):
    rng = np.random.default_rng(4)
    data = rng.standard_t(tail_df, 100_000).astype(np.float32)
    stats = stats_of(data)
    chosen = choose_range(stats, "mse")
    full = choose_range(stats, "minmax")
    assert chosen[1] < full[1]
    assert quantization_mse(data, *chosen) < quantization_mse(data, *full)


@pytest.mark.parametrize("method", ["minmax", "percentile", "entropy", "mse"])
def test_every_method_includes_zero_and_honours_symmetry(method):
    rng = np.random.default_rng(5)
    stats = stats_of((rng.standard_normal(20_000) + 3).astype(np.float32))
    lo, hi = choose_range(stats, method)
    assert lo <= 0.0 <= hi
    slo, shi = choose_range(stats, method, symmetric=True)
    assert slo == -shi


def test_unknown_method_is_an_error():
    with pytest.raises(ValueError, match="unknown calibration method"):
        choose_range(stats_of(np.ones(3)), "kl")


def test_channel_stats_match_numpy_and_refuse_a_changing_channel_count():
    rng = np.random.default_rng(6)
    a, b = rng.standard_normal((2, 3, 4, 4)), rng.standard_normal((5, 3, 2, 2))
    channels = ChannelStats(axis=1)
    channels.update(a)
    channels.update(b)
    rows = np.concatenate([np.moveaxis(x, 1, -1).reshape(-1, 3) for x in (a, b)])
    np.testing.assert_allclose(channels.mean, rows.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(channels.absmax, np.abs(rows).max(axis=0), rtol=1e-6)
    with pytest.raises(ValueError, match="changed size"):
        channels.update(rng.standard_normal((1, 4, 2, 2)))


def test_calibration_streams_inputs_of_varying_shape():
    model = build(CONV, ["w"])
    shapes = [{"x": (2, 2, 8, 8)}, {"x": (1, 2, 5, 13)}, {"x": (3, 2, 16, 4)}]
    source = gaussian_source(shapes, batches=6)
    result = calibrate(model, ["x", "c", "y"], source)
    session = make_session(model)
    conv_outputs = [session.run(["y"], feed)[0] for feed in source()]
    assert result.batches == 6 and result.samples == 12
    assert result.stats["y"].max == pytest.approx(max(float(o.max()) for o in conv_outputs))
    assert result.stats["y"].count == sum(o.size for o in conv_outputs)
    assert result.dtypes["c"] == np.float32 and result.shapes["x"] == (2, 2, 8, 8)


def _peak_bytes(batches: int) -> int:
    model = build(CONV, ["w"])
    source = gaussian_source({"x": (8, 2, 64, 64)}, batches=batches)
    tracemalloc.start()
    calibrate(model, ["x", "c", "y"], source)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak


def test_calibration_memory_does_not_grow_with_the_number_of_samples():
    # one batch of activations is ~1 MB per tensor; 40 batches accumulated would be ~120 MB
    few, many = _peak_bytes(4), _peak_bytes(40)
    assert many < few * 1.5


def test_empty_calibration_data_is_an_error():
    with pytest.raises(DataError, match="no samples"):
        calibrate(build(CONV, ["w"]), ["y"], lambda: iter([]))
