"""Rank selection for low-rank factorization: retained energy, a model-wide ratio, or a rank.

Every layer offers a set of options: keep the weight (its full parameter count, no error) or
factorize at a rank that is a multiple of ``round_to`` and saves at least ``min_saving`` of
its parameters and MACs (the layer's ``max_rank``). The error of rank ``r`` is the relative
truncation energy ``sum(s[r:]^2) / sum(s^2)`` of the (whitened) spectrum, times the layer's
sensitivity (how much of that error reaches the model output; 1 unless measured).

- ``energy=e``: per layer, the smallest rank keeping a fraction ``e`` of the energy, rounded up.
- ``rank=k``: the same rank everywhere (rounded up, capped at each layer's ``max_rank``).
- ``ranks={name: k}``: exactly these ranks for these layers (where they save), no others.
- ``ratio=p``: the factorizable layers together lose a fraction ``p`` of their parameters
  (``ratio=0.3``: 30 % fewer; the same convention as ``prune(ratio=...)``).
  Ranks are allocated across layers by minimizing the summed error under that budget, a
  multiple-choice knapsack solved by dynamic programming over the budget (in 4096 steps,
  params rounded up so the result always fits), then a greedy pass spends what the rounding
  left on the upgrade with the best error reduction per parameter. Layers whose spectrum
  decays fast give up rank first; layers that would suffer most keep theirs or stay whole.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence

import numpy as np

__all__ = [
    "BUDGET_STEPS",
    "LayerSpectrum",
    "allocate_ratio",
    "allowed_ranks",
    "rank_for_energy",
    "round_rank",
    "select_ranks",
]


@dataclasses.dataclass(frozen=True)
class LayerSpectrum:
    """What rank selection knows about one factorizable layer.

    Attributes:
        name: The layer (node) name.
        energy: Squared singular values by rank index, descending (summed over the slices of a
            batched weight, which share one rank).
        params: Weight parameters of the layer as it is.
        params_per_rank: Weight parameters per unit of rank once factorized.
        max_rank: Largest rank that still saves ``min_saving`` of params and MACs (0: none).
        sensitivity: Weight of this layer's relative error in the model-wide objective.
    """

    name: str
    energy: np.ndarray
    params: int
    params_per_rank: int
    max_rank: int
    sensitivity: float = 1.0

    def relative_error(self, rank: int) -> float:
        """Relative truncation energy at ``rank`` (0 keeps nothing, full rank is exact)."""
        total = float(self.energy.sum())
        return float(self.energy[rank:].sum()) / total if total > 0 else 0.0


def round_rank(rank: int, round_to: int, full: int) -> int:
    """``rank`` rounded up to a multiple of ``round_to``, at most ``full``."""
    if round_to > 1:
        rank = math.ceil(rank / round_to) * round_to
    return min(max(rank, 1), full)


def allowed_ranks(layer: LayerSpectrum, round_to: int) -> list[int]:
    """Multiples of ``round_to`` up to the layer's ``max_rank``."""
    step = max(round_to, 1)
    return list(range(step, layer.max_rank + 1, step))


def rank_for_energy(energy: np.ndarray, fraction: float) -> int:
    """Smallest rank whose singular values hold ``fraction`` of the total energy."""
    total = float(energy.sum())
    if total <= 0:
        return 1
    kept = np.cumsum(energy) / total
    return int(np.searchsorted(kept, fraction - 1e-12) + 1)


def select_ranks(
    layers: Sequence[LayerSpectrum],
    *,
    energy: float | None = None,
    ratio: float | None = None,
    rank: int | None = None,
    ranks: Mapping[str, int] | None = None,
    round_to: int = 1,
) -> dict[str, int | None]:
    """Rank per layer name (None: keep the layer) under exactly one of the four criteria."""
    given = [c for c in (energy, ratio, rank, ranks) if c is not None]
    if len(given) != 1:
        raise ValueError("give exactly one of energy, ratio, rank, ranks")
    if ratio is not None:
        return allocate_ratio(layers, ratio, round_to)
    if ranks is not None:
        return {
            layer.name: ranks[layer.name]
            if layer.name in ranks and ranks[layer.name] <= layer.max_rank else None
            for layer in layers
        }
    choice: dict[str, int | None] = {}
    for layer in layers:
        full = layer.energy.size
        wanted = rank if rank is not None else rank_for_energy(layer.energy, float(energy or 0))
        chosen = round_rank(wanted, round_to, full)
        choice[layer.name] = chosen if chosen <= layer.max_rank else None
    return choice


#: Budget steps of the allocation's dynamic program.
BUDGET_STEPS = 4096


def allocate_ratio(
    layers: Sequence[LayerSpectrum], ratio: float, round_to: int
) -> dict[str, int | None]:
    """Ranks that remove ``ratio`` of the layers' parameters at the least summed error."""
    options = [_options(layer, round_to) for layer in layers]
    total = sum(layer.params for layer in layers)
    if not layers or total == 0:
        return {}
    budget = (1 - ratio) * total
    choice = _knapsack(options, budget)
    used = sum(opts[i][1] for opts, i in zip(options, choice, strict=True))
    _spend_leftover(options, choice, budget - used)
    return {
        layer.name: opts[i][0] for layer, opts, i in zip(layers, options, choice, strict=True)
    }


def _knapsack(options: list[list[tuple[int | None, int, float]]], budget: float) -> list[int]:
    """One option per layer minimizing the summed error with summed params <= ``budget``.

    Dynamic program over the budget in :data:`BUDGET_STEPS` steps, each option's params
    rounded *up* to whole steps, so the result always fits; it is optimal among the choices
    that still fit when every layer's params are rounded up (at most one step per layer of
    slack). When nothing fits, every layer takes its smallest option.
    """
    smallest = [0] * len(options)
    if budget <= 0:
        return smallest
    step = budget / BUDGET_STEPS
    width = BUDGET_STEPS + 1
    # best[b]: least error of the layers so far within b steps; picks[l][b]: option taken.
    best = np.zeros(width)
    picks = np.zeros((len(options), width), dtype=np.int64)
    for index, opts in enumerate(options):
        new = np.full(width, np.inf)
        for k, (_, params, error) in enumerate(opts):
            cost = math.ceil(params / step - 1e-9)
            if cost >= width:
                continue
            candidate = np.full(width, np.inf)
            candidate[cost:] = best[: width - cost] + error
            better = candidate < new
            new[better] = candidate[better]
            picks[index][better] = k
        best = new
    if not np.isfinite(best[-1]):
        return smallest
    choice = [0] * len(options)
    remaining = BUDGET_STEPS
    for index in range(len(options) - 1, -1, -1):
        k = int(picks[index][remaining])
        choice[index] = k
        remaining -= math.ceil(options[index][k][1] / step - 1e-9)
    return choice


def _options(layer: LayerSpectrum, round_to: int) -> list[tuple[int | None, int, float]]:
    """(rank or None to keep, params, weighted error), ordered by params."""
    found: list[tuple[int | None, int, float]] = [
        (r, r * layer.params_per_rank, layer.sensitivity * layer.relative_error(r))
        for r in allowed_ranks(layer, round_to)
    ]
    found.append((None, layer.params, 0.0))
    return found


def _spend_leftover(
    options: list[list[tuple[int | None, int, float]]], choice: list[int], left: float
) -> None:
    """Greedily upgrade layers (next option up) while the budget allows, best gain first."""
    while True:
        best: tuple[float, int] | None = None
        for layer, (opts, i) in enumerate(zip(options, choice, strict=True)):
            if i + 1 >= len(opts):
                continue
            cost = opts[i + 1][1] - opts[i][1]
            gain = opts[i][2] - opts[i + 1][2]
            if cost <= left and gain > 0:
                score = gain / max(cost, 1)
                if best is None or score > best[0]:
                    best = (score, layer)
        if best is None:
            return
        layer = best[1]
        i = choice[layer]
        left -= options[layer][i + 1][1] - options[layer][i][1]
        choice[layer] = i + 1
