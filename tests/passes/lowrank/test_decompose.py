import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lowrank_testlib import single_blas_thread  # noqa: F401  (autouse fixture)

from irpass.passes.lowrank.decompose import Whitening, decompose


def correlated_inputs(rng: np.random.Generator, samples: int, features: int,
                      latent: int) -> np.ndarray:
    """Inputs near a ``latent``-dimensional subspace with uneven scales (like activations)."""
    mix = rng.standard_normal((latent, features)) * rng.uniform(0.2, 3.0, (latent, 1))
    return rng.standard_normal((samples, latent)) @ mix + 0.05 * rng.standard_normal(
        (samples, features)) + rng.uniform(-1, 1, features)


def output_error(w: np.ndarray, a: np.ndarray, b: np.ndarray, x: np.ndarray) -> float:
    return float(np.mean(np.sum(((w - a @ b) @ x.T) ** 2, axis=0)))


@pytest.mark.parametrize("shape", [(6, 9), (9, 6), (5, 5)])
@pytest.mark.parametrize("whiten", ["none", "full", "diagonal", "singular"])
def test_full_rank_is_exact(shape, whiten):
    rng = np.random.default_rng(0)
    w = rng.standard_normal(shape)
    x = correlated_inputs(rng, 50, shape[1], 3)
    whitening = {
        "none": None,
        "full": Whitening.from_moment(x.T @ x / len(x)),
        "diagonal": Whitening.diagonal(np.mean(x**2, axis=0)),
        # A moment of rank 1 (fewer samples than features): damping keeps S invertible.
        "singular": Whitening.from_moment(np.outer(x[0], x[0]), damp=1e-3),
    }[whiten]
    d = decompose(w, whitening)
    a, b = d.factors(d.full_rank)
    assert a.shape == (shape[0], min(shape)) and b.shape == (min(shape), shape[1])
    np.testing.assert_allclose(a @ b, w, atol=1e-9)
    assert d.tail_energy(d.full_rank) == 0


def test_plain_error_decreases_with_rank_and_matches_eckart_young():
    rng = np.random.default_rng(1)
    w = rng.standard_normal((12, 20))
    d = decompose(w)
    errors = []
    for rank in range(1, d.full_rank + 1):
        a, b = d.factors(rank)
        err = float(np.sum((w - a @ b) ** 2))
        assert err == pytest.approx(d.tail_energy(rank), abs=1e-9)
        errors.append(err)
    assert all(e1 > e2 for e1, e2 in itertools.pairwise(errors))


def test_whitened_error_decreases_with_rank_and_is_the_output_error():
    rng = np.random.default_rng(2)
    w = rng.standard_normal((10, 16))
    x = correlated_inputs(rng, 400, 16, 5)
    moment = x.T @ x / len(x)
    d = decompose(w, Whitening.from_moment(moment, damp=0.0))
    errors = [output_error(w, *d.factors(r), x) for r in range(1, d.full_rank + 1)]
    assert all(e1 >= e2 - 1e-9 for e1, e2 in itertools.pairwise(errors))
    # Without damping the truncated whitened energy is the output error energy (up to the
    # 1e-9 relative floor on eigenvalues).
    for rank in (2, 5, 8):
        assert output_error(w, *d.factors(rank), x) == pytest.approx(
            d.tail_energy(rank), rel=1e-4)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    m=st.integers(2, 12),
    n=st.integers(3, 16),
    latent=st.integers(1, 6),
    damp=st.sampled_from([0.0, 0.01, 0.1]),
    data=st.data(),
)
def test_data_aware_output_error_never_exceeds_plain_at_equal_rank(seed, m, n, latent, damp,
                                                                   data):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((m, n)) * rng.uniform(0.1, 2.0, (1, n))
    x = correlated_inputs(rng, 200, n, min(latent, n))
    rank = data.draw(st.integers(1, min(m, n)))
    plain = decompose(w).factors(rank)
    aware = decompose(w, Whitening.from_moment(x.T @ x / len(x), damp=damp)).factors(rank)
    # Optimal for ||.||^2 on x + damp * weight error, so never worse than plain on x.
    assert output_error(w, *aware, x) <= output_error(w, *plain, x) * (1 + 1e-7) + 1e-9


def test_data_aware_is_much_better_on_strongly_correlated_inputs():
    rng = np.random.default_rng(3)
    w = rng.standard_normal((32, 48))
    x = correlated_inputs(rng, 1000, 48, 8)
    d = decompose(w, Whitening.from_moment(x.T @ x / len(x)))
    plain = output_error(w, *decompose(w).factors(8), x)
    assert output_error(w, *d.factors(8), x) < 0.1 * plain


def test_rank_out_of_range_and_mismatched_whitening_are_errors():
    d = decompose(np.eye(3))
    with pytest.raises(ValueError, match="rank"):
        d.factors(4)
    with pytest.raises(ValueError, match="input features"):
        decompose(np.ones((2, 3)), Whitening.from_moment(np.eye(4)))
    with pytest.raises(ValueError, match="2-D"):
        decompose(np.ones(3))


def test_zero_input_still_gives_an_invertible_whitening():
    whitening = Whitening.from_moment(np.zeros((4, 4)))
    np.testing.assert_allclose(whitening.s @ whitening.s_inv, np.eye(4), atol=1e-9)
