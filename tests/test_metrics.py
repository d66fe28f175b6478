from __future__ import annotations

import math

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from irpass.metrics import (
    SQNR_CAP_DB,
    FidelityAccumulator,
    compare_outputs,
    compare_tensor,
    cosine,
    max_abs_error,
    sqnr_db,
    tolerance_for,
    top1_agreement,
)


def test_cosine_of_known_vectors() -> None:
    assert cosine(np.array([1.0, 0.0]), np.array([0.0, 1.0])) == 0.0
    assert cosine(np.array([1.0, 2.0]), np.array([2.0, 4.0])) == pytest.approx(1.0)
    assert cosine(np.array([1.0, 2.0]), np.array([-1.0, -2.0])) == pytest.approx(-1.0)
    assert cosine(np.zeros(3), np.zeros(3)) == 1.0
    assert cosine(np.zeros(3), np.ones(3)) == 0.0


def test_metrics_accept_zero_dimensional_arrays() -> None:
    a, b = np.float32(2.0), np.float32(2.5)
    assert max_abs_error(np.asarray(a), np.asarray(b)) == pytest.approx(0.5)
    assert cosine(np.asarray(a), np.asarray(b)) == pytest.approx(1.0)
    assert sqnr_db(np.asarray(a), np.asarray(b)) == pytest.approx(10 * math.log10(4 / 0.25))
    mismatches = compare_outputs({"y": np.asarray(a)}, {"y": np.asarray(b)})
    assert len(mismatches) == 1 and mismatches[0].output == "y"
    assert compare_outputs({"y": np.asarray(a)}, {"y": np.asarray(a)}) == []
    assert not compare_tensor(np.asarray(a), np.asarray(a)).diverged


def test_sqnr_known_value_and_cap() -> None:
    ref = np.array([3.0, 4.0])
    assert sqnr_db(ref, ref) == SQNR_CAP_DB
    assert sqnr_db(ref, ref + np.array([0.5, 0.0])) == pytest.approx(10 * math.log10(25 / 0.25))
    assert sqnr_db(np.zeros(2), np.ones(2)) == -SQNR_CAP_DB


def test_max_abs_error_mismatched_shapes_and_strings() -> None:
    assert max_abs_error(np.zeros(2), np.zeros(3)) == float("inf")
    words = np.array(["a", "b"], dtype=object)
    assert max_abs_error(words, words.copy()) == 0.0
    assert max_abs_error(words, np.array(["a", "c"], dtype=object)) == float("inf")


def test_top1_agreement() -> None:
    ref = np.array([[0.1, 0.9], [0.8, 0.2]])
    assert top1_agreement(ref, ref) == 1.0
    assert top1_agreement(ref, ref[:, ::-1]) == 0.0


def test_compare_outputs_reports_shape_dtype_and_exact_mismatches() -> None:
    f = np.zeros((2, 2), np.float32)
    assert "shape" in compare_outputs({"y": f}, {"y": f[:1]})[0].detail
    assert "dtype" in compare_outputs({"y": f}, {"y": f.astype(np.float64)})[0].detail
    ints = np.array([1, 2, 3])
    assert "differ exactly" in compare_outputs({"y": ints}, {"y": ints + 1})[0].detail
    assert compare_outputs({"y": f}, {"z": f})[0].max_abs_error == float("inf")


def test_compare_outputs_sequences_and_optionals() -> None:
    seq = [np.ones(2, np.float32), np.zeros(3, np.float32)]
    assert compare_outputs({"s": seq}, {"s": [a.copy() for a in seq]}) == []
    assert compare_outputs({"s": seq}, {"s": seq[:1]})[0].output == "s"
    bad = [seq[0], np.ones(3, np.float32)]
    assert compare_outputs({"s": seq}, {"s": bad})[0].output == "s[1]"
    assert compare_outputs({"o": None}, {"o": None}) == []
    assert compare_outputs({"o": None}, {"o": np.ones(1)})[0].output == "o"


def test_non_finite_values_must_match() -> None:
    ref = np.array([np.inf, 1.0], np.float32)
    assert compare_outputs({"y": ref}, {"y": ref.copy()}) == []
    assert compare_outputs({"y": ref}, {"y": np.array([1.0, 1.0], np.float32)})
    assert compare_tensor(ref, np.array([np.nan, 1.0], np.float32)).diverged


def test_fidelity_accumulator_streams_like_whole_arrays() -> None:
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((10, 5))
    out = ref + 0.1 * rng.standard_normal((10, 5))
    acc = FidelityAccumulator(class_axis=1)
    for start in range(0, 10, 3):
        acc.update(ref[start : start + 3], out[start : start + 3])
    result = acc.result()
    assert result["sqnr_db"] == pytest.approx(sqnr_db(ref, out))
    assert result["max_abs_error"] == pytest.approx(max_abs_error(ref, out))
    assert result["top1_agreement"] == pytest.approx(top1_agreement(ref, out, axis=1))
    expected_cos = np.mean([cosine(r, o) for r, o in zip(ref, out, strict=True)])
    assert result["cosine"] == pytest.approx(expected_cos)
    with pytest.raises(ValueError, match="has shape"):
        acc.update(ref, out[:, :2])


def test_fidelity_accumulator_integer_outputs() -> None:
    acc = FidelityAccumulator(is_float=False)
    acc.update(np.array([1, 2, 3, 4]), np.array([1, 2, 0, 4]))
    assert acc.result() == {"exact_match": 0.75, "max_abs_error": 3.0}


@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_non_finite_and_empty_outputs_compare_without_numpy_warnings() -> None:
    # inf - inf used to emit "invalid value encountered in subtract" to every CLI user
    ref = np.array([[np.inf, 1.0, -np.inf], [2.0, np.nan, 3.0]], np.float32)
    out = np.array([[np.inf, 1.5, np.inf], [2.0, np.nan, 3.0]], np.float32)
    assert max_abs_error(ref, out) == pytest.approx(0.5)
    assert max_abs_error(np.array([np.inf]), np.array([np.inf])) == 0.0
    acc = FidelityAccumulator()
    acc.update(ref, out)
    acc.update(ref[:0], out[:0])  # an empty batch adds nothing (it used to fail to reshape)
    result = acc.result()
    finite = np.isfinite(ref) & np.isfinite(out)
    assert result["sqnr_db"] == pytest.approx(sqnr_db(ref[finite], out[finite]))
    assert result["max_abs_error"] == pytest.approx(0.5)
    assert math.isfinite(result["cosine"])


finite = st.floats(-1e3, 1e3, allow_nan=False, width=32)


@settings(max_examples=60, deadline=None)
@given(
    hnp.arrays(np.float32, hnp.array_shapes(min_dims=0, max_dims=3, max_side=4), elements=finite),
    st.floats(1e-3, 10.0),
)
def test_metric_properties(a: np.ndarray, noise: float) -> None:
    b = a + np.float32(noise)
    assert -1.0 <= cosine(a, b) <= 1.0
    assert cosine(a, a) == pytest.approx(1.0) or not np.any(a)
    assert max_abs_error(a, a) == 0.0
    assert max_abs_error(a, b) == pytest.approx(max_abs_error(b, a))
    assert sqnr_db(a, a) == SQNR_CAP_DB
    assert not compare_tensor(a, a).diverged
    assert compare_outputs({"y": a}, {"y": a.copy()}) == []


def test_tolerance_mixed_range_small_element_change_is_caught() -> None:
    # one large element must not license a large relative change of a small one: with atol
    # scaled by max|ref| (1000) 0.01 -> 0.09 passed; scaled by the RMS it does not
    rng = np.random.default_rng(0)
    reference = rng.standard_normal(64).astype(np.float32)
    reference[0], reference[1] = 1000.0, 0.01
    changed = reference.copy()
    changed[1] = 0.09
    mismatches = compare_outputs({"y": reference}, {"y": changed})
    assert len(mismatches) == 1 and "flat index 1" in mismatches[0].detail
    assert compare_tensor(reference, changed).diverged


def test_tolerance_accepts_float32_rounding_of_a_reassociated_computation() -> None:
    # the same dot products summed in another order (what folding does) stay equal
    rng = np.random.default_rng(1)
    w = rng.standard_normal((256, 512)).astype(np.float32) * 10
    x = rng.standard_normal((8, 256)).astype(np.float32) * 10
    reference = (x @ w).astype(np.float32)
    reassociated = (x[:, ::-1] @ w[::-1, :]).astype(np.float32)
    assert not np.array_equal(reference, reassociated)
    assert compare_outputs({"y": reference}, {"y": reassociated}) == []


def test_tolerance_sqnr_guard_catches_a_shift_within_the_per_element_bound() -> None:
    rng = np.random.default_rng(2)
    reference = rng.standard_normal(10_000).astype(np.float32) * 0.5
    # every element moved by 90 % of its own bound (atol + rtol |b|): each passes alone
    shifted = reference + 0.9 * (1e-4 + 1e-3 * reference)
    mismatches = compare_outputs({"y": reference}, {"y": shifted.astype(np.float32)})
    assert mismatches and "SQNR" in mismatches[0].detail
    # a looser tolerance scale lowers the guard too
    assert compare_outputs({"y": reference}, {"y": shifted.astype(np.float32)}, 100.0) == []


def test_tolerance_is_dtype_aware() -> None:
    reference = np.linspace(-1, 1, 100)
    for dtype, step, ok in ((np.float16, 5e-4, True), (np.float32, 5e-4, False)):
        ref = reference.astype(dtype)
        got = (reference + step).astype(dtype)
        assert (compare_outputs({"y": ref}, {"y": got}) == []) is ok, dtype
    ints = np.arange(5, dtype=np.int64)
    assert compare_outputs({"i": ints}, {"i": ints + np.array([0, 0, 1, 0, 0])})


def test_tolerance_guard_ignores_outputs_at_rounding_level() -> None:
    # an output that is zero up to rounding (x - x) has no signal to compare noise against
    reference = np.full(100, 1e-7, dtype=np.float32)
    assert compare_outputs({"y": reference}, {"y": -reference}) == []


def test_narrow_float_types_compare_within_one_unit_in_the_last_place() -> None:
    values = np.array([1.0, 2.0, -4.0, np.nan], dtype=np.float32)
    ref = values.astype(ml_dtypes.float8_e4m3fn)
    assert tolerance_for(ref.dtype) is not None
    assert compare_outputs({"y": ref}, {"y": ref.copy()}) == []  # NaN where NaN
    one_ulp = np.array([1.125, 2.0, -4.5, np.nan], dtype=np.float32)
    assert compare_outputs({"y": ref}, {"y": one_ulp.astype(ml_dtypes.float8_e4m3fn)}) == []
    off = np.array([1.5, 2.0, -4.0, np.nan], dtype=np.float32).astype(ml_dtypes.float8_e4m3fn)
    assert compare_outputs({"y": ref}, {"y": off})
    wide = values.astype(ml_dtypes.bfloat16)
    assert compare_outputs({"y": wide}, {"y": (values * 1.05).astype(ml_dtypes.bfloat16)})


def test_narrow_integer_types_compare_exactly() -> None:
    ref = np.array([-8, 0, 7], dtype=ml_dtypes.int4)
    assert tolerance_for(ref.dtype) is None
    assert compare_outputs({"y": ref}, {"y": ref.copy()}) == []
    (found,) = compare_outputs({"y": ref}, {"y": np.array([-8, 1, 7], dtype=ml_dtypes.int4)})
    assert "1 elements differ" in found.detail
