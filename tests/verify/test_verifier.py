from __future__ import annotations

import math

import numpy as np
import pytest

from irpass.verify.verifier import drift_metrics, max_abs_error_all


def _drift(reference: object, actual: object) -> dict[str, float]:
    return drift_metrics([{"y": reference}], [{"y": actual}])


@pytest.mark.parametrize(
    "value",
    [
        np.float32(2.5),
        np.array(3.0, dtype=np.float32),
        [np.ones(3, np.float32), np.zeros((2, 2), np.float32)],
        None,
        np.array(["a", "b"], dtype=object),
    ],
    ids=["numpy_scalar", "0d", "sequence_of_shapes", "empty_optional", "strings"],
)
def test_equal_outputs_of_every_kind_have_no_drift(value: object) -> None:
    drift = _drift(value, value)
    assert drift["max_abs_error"] == 0.0 and drift["cosine"] == 1.0


def test_sequence_elements_are_compared_one_by_one() -> None:
    reference = [np.ones(3, np.float32), np.full((2, 2), 2.0, np.float32)]
    actual = [np.ones(3, np.float32), np.full((2, 2), 2.5, np.float32)]
    drift = _drift(reference, actual)
    assert drift["max_abs_error"] == pytest.approx(0.5)
    assert math.isfinite(drift["sqnr_db"])


@pytest.mark.parametrize(
    ("reference", "actual"),
    [
        ([np.ones(2)], [np.ones(2), np.ones(2)]),
        (None, np.ones(2)),
        ([np.ones(2)], np.ones((1, 2))),
        (np.ones(2), np.ones(3)),
    ],
    ids=["sequence_length", "optional_emptiness", "sequence_vs_tensor", "shape"],
)
def test_structural_differences_diverge(reference: object, actual: object) -> None:
    drift = _drift(reference, actual)
    assert drift["max_abs_error"] == float("inf") and drift["cosine"] == 0.0


def test_max_abs_error_over_sequences_and_optionals() -> None:
    reference = [{"s": [np.ones(3, np.float32), np.ones((2, 2), np.float32)], "o": None}]
    actual = [{"s": [np.ones(3, np.float32), np.full((2, 2), 1.25, np.float32)], "o": None}]
    assert max_abs_error_all(reference, actual) == pytest.approx(0.25)
    assert max_abs_error_all(reference, [{"s": reference[0]["s"][:1], "o": None}]) == math.inf
