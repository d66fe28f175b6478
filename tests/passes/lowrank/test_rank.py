import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from irpass.passes.lowrank.rank import (
    BUDGET_STEPS,
    LayerSpectrum,
    allocate_ratio,
    allowed_ranks,
    rank_for_energy,
    round_rank,
    select_ranks,
)


def layer(name: str, decay: float, m: int = 64, n: int = 64, min_saving: float = 0.2,
          sensitivity: float = 1.0) -> LayerSpectrum:
    energy = decay ** np.arange(min(m, n), dtype=np.float64)
    max_rank = int((1 - min_saving) * m * n / (m + n))
    return LayerSpectrum(name, energy, m * n, m + n, max_rank, sensitivity)


def test_round_rank_rounds_up_to_a_multiple_and_caps_at_full():
    assert round_rank(3, 8, 64) == 8
    assert round_rank(8, 8, 64) == 8
    assert round_rank(9, 8, 64) == 16
    assert round_rank(70, 8, 64) == 64
    assert round_rank(5, 1, 64) == 5


def test_rank_for_energy_keeps_at_least_the_fraction():
    energy = np.array([8.0, 4.0, 2.0, 1.0, 1.0])
    assert rank_for_energy(energy, 0.5) == 1
    assert rank_for_energy(energy, 0.75) == 2
    assert rank_for_energy(energy, 0.76) == 3
    assert rank_for_energy(energy, 1.0) == 5
    assert rank_for_energy(np.zeros(3), 0.9) == 1


def test_energy_and_rank_criteria_leave_layers_alone_where_no_saving():
    fast, flat = layer("fast", 0.5), layer("flat", 0.999)
    ranks = select_ranks([fast, flat], energy=0.99, round_to=8)
    assert ranks == {"fast": 8, "flat": None}  # flat needs ~all 64 > max rank 25
    assert select_ranks([fast, flat], rank=20, round_to=8) == {"fast": 24, "flat": 24}
    assert select_ranks([fast], rank=30, round_to=8) == {"fast": None}


def test_exactly_one_criterion():
    with pytest.raises(ValueError, match="exactly one of"):
        select_ranks([layer("a", 0.5)], energy=0.9, rank=8)


def test_ratio_allocates_by_spectrum_not_uniformly():
    layers = [layer("fast", 0.6), layer("medium", 0.9), layer("flat", 0.99)]
    ranks = allocate_ratio(layers, 0.4, 8)
    params = sum(r * 128 if r else 64 * 64 for r in ranks.values())
    assert params <= 0.6 * 3 * 64 * 64
    # The fast-decaying layer gives up rank first; the flat one keeps the most.
    fast, medium, flat = (ranks[n] or 64 for n in ("fast", "medium", "flat"))
    assert fast < medium <= flat
    assert len(set(ranks.values())) > 1


def test_ratio_follows_sensitivity():
    same = [layer("a", 0.9, sensitivity=1.0), layer("b", 0.9, sensitivity=10.0)]
    ranks = allocate_ratio(same, 0.5, 8)
    assert (ranks["a"] or 64) < (ranks["b"] or 64)


def test_unreachable_ratio_gives_the_smallest_ranks():
    ranks = allocate_ratio([layer("a", 0.9), layer("b", 0.5)], 0.99, 8)
    assert ranks == {"a": 8, "b": 8}


def test_allowed_ranks():
    assert allowed_ranks(layer("a", 0.9), 8) == [8, 16, 24]
    assert allowed_ranks(LayerSpectrum("s", np.ones(4), 16, 8, 1), 8) == []


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), count=st.integers(1, 3),
       ratio=st.floats(0.05, 0.8))
def test_ratio_allocation_fits_the_budget_and_is_optimal(seed, count, ratio):
    rng = np.random.default_rng(seed)
    layers = []
    for i in range(count):
        m, n = int(rng.integers(16, 48)), int(rng.integers(16, 48))
        energy = np.sort(rng.gamma(0.5, size=min(m, n)))[::-1]
        layers.append(LayerSpectrum(f"l{i}", energy, m * n, m + n,
                                    int(0.8 * m * n / (m + n)), float(rng.uniform(0.5, 2))))
    total = sum(x.params for x in layers)
    budget = (1 - ratio) * total
    ranks = allocate_ratio(layers, ratio, 4)

    def cost(choice):
        params = sum(x.params if r is None else r * x.params_per_rank
                     for x, r in zip(layers, choice, strict=True))
        error = sum(0 if r is None else x.sensitivity * x.relative_error(r)
                    for x, r in zip(layers, choice, strict=True))
        return params, error

    options = [[None, *allowed_ranks(x, 4)] for x in layers]
    everything = [cost(c) for c in itertools.product(*options)]
    params, error = cost([ranks[x.name] for x in layers])
    if not any(p <= budget for p, _ in everything):
        return  # unreachable budget: smallest ranks (tested above)
    assert params <= budget
    # Optimal among the choices that fit with one rounding step of slack per layer.
    slack = count * budget / BUDGET_STEPS
    reference = [e for p, e in everything if p <= budget - slack]
    if reference:
        assert error <= min(reference) + 1e-12
