"""The low-rank engine shared by ``svd``, ``factorize_gemm`` and ``factorize_conv``.

One run: find candidate layers, drop those that cannot save ``min_saving`` at any allowed
rank, stream calibration data once to accumulate each layer's input moments (data-aware
mode), decompose every weight (plain or whitened SVD), choose ranks (energy, explicit rank,
or a model-wide parameter ratio allocated across layers), rewrite the chosen layers and
report per layer: rank, parameters, weight error and, with calibration data, the relative
output error on that data for this mode and for plain SVD at the same rank.
"""

from __future__ import annotations

import abc
import dataclasses
import fnmatch
import logging
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import onnx_ir as ir

from irpass.analysis.activations import iter_activations
from irpass.errors import DataError
from irpass.pass_base import IrpassPass, option
from irpass.passes.lowrank.decompose import Decomposition, Whitening, decompose
from irpass.passes.lowrank.layer import Candidate
from irpass.passes.lowrank.moments import MomentAccumulator
from irpass.passes.lowrank.rank import LayerSpectrum, select_ranks

__all__ = ["LayerPlan", "LowRankOptions", "LowRankPass"]

logger = logging.getLogger("irpass.passes.lowrank")

#: Energy kept per layer when no criterion is given.
DEFAULT_ENERGY = 0.99


@dataclasses.dataclass(frozen=True)
class LowRankOptions:
    """Options of the low-rank passes (at most one of energy, ratio, rank).

    Without any of the three, each layer keeps 99 % of its (whitened) spectral energy.
    """

    energy: float | None = option(
        None, "keep this fraction of each layer's (whitened) singular-value energy")
    ratio: float | None = option(
        None, "keep this fraction of the factorizable layers' parameters, ranks allocated "
        "across layers by error")
    rank: int | None = option(None, "this rank for every layer (capped where it would not save)")
    round_to: int = option(8, "ranks are multiples of this")
    data_aware: bool | None = option(
        None, "whiten by calibration activations (default: when calibration data is given)")
    min_saving: float = option(
        0.2, "factorize a layer only if it saves at least this fraction of params and MACs")
    ignore: list[str] = option([], "node names or op types (fnmatch patterns) to leave alone")
    bias_correction: bool = option(
        True, "data-aware: add the mean output error to the bias (centered whitening)")
    damp: float = option(0.01, "data-aware: eigenvalue damping, fraction of the mean")
    spatial: bool = option(False, "Conv kxk: factor as kx1 then 1xk instead of kxk then 1x1")
    max_whiten_features: int = option(
        4096, "inputs wider than this are whitened per feature (diagonal) to bound memory")

    def __post_init__(self) -> None:
        given = [n for n in ("energy", "ratio", "rank") if getattr(self, n) is not None]
        if len(given) > 1:
            raise ValueError(f"give one of energy, ratio, rank (got {', '.join(given)})")
        for name in ("energy", "ratio"):
            value = getattr(self, name)
            if value is not None and not 0 < value <= 1:
                raise ValueError(f"{name} must be in (0, 1], got {value}")
        if self.rank is not None and self.rank < 1:
            raise ValueError(f"rank must be >= 1, got {self.rank}")
        if self.round_to < 1:
            raise ValueError(f"round_to must be >= 1, got {self.round_to}")
        if not 0 <= self.min_saving < 1:
            raise ValueError(f"min_saving must be in [0, 1), got {self.min_saving}")
        if self.damp < 0:
            raise ValueError(f"damp must be >= 0, got {self.damp}")

    def criterion(self) -> dict[str, Any]:
        """The rank criterion as keyword arguments of :func:`select_ranks`."""
        if self.ratio is not None:
            return {"ratio": self.ratio}
        if self.rank is not None:
            return {"rank": self.rank}
        return {"energy": self.energy if self.energy is not None else DEFAULT_ENERGY}


@dataclasses.dataclass
class LayerPlan:
    """One candidate layer through the engine."""

    candidate: Candidate
    max_rank: int
    moments: list[MomentAccumulator] | None = None
    decompositions: list[Decomposition] = dataclasses.field(default_factory=list)
    rank: int | None = None

    def spectrum(self) -> LayerSpectrum:
        """What rank selection needs (energy summed over slices)."""
        energy = np.sum([d.energy for d in self.decompositions], axis=0)
        c = self.candidate
        return LayerSpectrum(c.name, energy, c.params, c.params_at(1), self.max_rank)


class LowRankPass(IrpassPass):
    """Base of the low-rank passes: subclasses say which candidates they look for."""

    _abstract = True
    lossless = False
    Options = LowRankOptions
    #: Bodies of If/Loop/Scan are left alone: their activations cannot be calibrated.
    recurses_into_subgraphs = False
    kinds: ClassVar[tuple[str, ...]] = ()

    def __init__(self, options: Any = None, context: Any = None) -> None:
        super().__init__(options, context)
        self.details: dict[str, Any] = {}

    @abc.abstractmethod
    def find(self, graph: ir.Graph) -> tuple[list[Candidate], dict[str, str]]:
        """Candidate layers of ``graph`` and, by node name, why other layers are not."""

    def call(self, model: ir.Model) -> ir.passes.PassResult:  # noqa: D102
        opts: LowRankOptions = self.options
        data_aware = self._data_aware()
        candidates, refused = self.find(model.graph)
        plans: list[LayerPlan] = []
        for cand in candidates:
            if any(fnmatch.fnmatchcase(p_name, pat) for pat in opts.ignore
                   for p_name in (cand.name, cand.node.op_type)):
                refused[cand.name] = "ignored (option ignore)"
                continue
            max_rank = cand.max_rank(opts.min_saving)
            if max_rank < opts.round_to:
                refused[cand.name] = (
                    f"no rank that is a multiple of {opts.round_to} saves "
                    f"{opts.min_saving:.0%} (largest saving rank {max_rank})"
                )
                continue
            plans.append(LayerPlan(cand, max_rank))
        for name, reason in refused.items():
            logger.debug("not factorizing %s: %s", name, reason)
        self.stats["candidates"] = len(plans)
        self.stats["skipped"] = len(refused)
        if not plans:
            self.details = {"mode": "data-aware" if data_aware else "plain", "layers": [],
                            "skipped": refused}
            return ir.passes.PassResult(model, False)
        calibrated = self.context.calibration_data is not None
        if calibrated:
            self._accumulate(model, plans)
        for plan in plans:
            plan.decompositions = [
                decompose(matrix, self._whitening(plan, s) if data_aware else None)
                for s, matrix in enumerate(plan.candidate.matrices)
            ]
        ranks = select_ranks([p.spectrum() for p in plans], round_to=opts.round_to,
                             **opts.criterion())
        layers: list[dict[str, Any]] = []
        taken: set[str] = set()
        for plan in plans:
            plan.rank = ranks.get(plan.candidate.name)
            if plan.rank is None:
                refused[plan.candidate.name] = "the chosen rank would not save enough"
                continue
            layers.append(self._apply(plan, data_aware, taken))
        _remove_unused_weights(model.graph, [p.candidate for p in plans if p.rank is not None])
        self.details = self._summary(plans, layers, refused, data_aware)
        return ir.passes.PassResult(model, bool(layers))

    # ------------------------------------------------------------------------------ steps
    def _data_aware(self) -> bool:
        wanted = self.options.data_aware
        has_data = self.context.calibration_data is not None
        if wanted and not has_data:
            raise DataError(
                f"{self.name}(data_aware=true) needs calibration data",
                hint="pass --calib-data (e.g. models/trained/digits8_calib.npz), or drop "
                "data_aware=true for plain SVD",
            )
        return has_data if wanted is None else bool(wanted)

    def _accumulate(self, model: ir.Model, plans: list[LayerPlan]) -> None:
        """Stream the calibration data once and fill every plan's input moments.

        Memory is one n x n float64 matrix per layer slice (n = input features; wider inputs
        than ``max_whiten_features`` keep only the diagonal), whatever the amount of data.
        """
        opts: LowRankOptions = self.options
        for plan in plans:
            slices, _, n = plan.candidate.shape
            diagonal = n > opts.max_whiten_features
            plan.moments = [MomentAccumulator(n, diagonal) for _ in range(slices)]
        names = list(dict.fromkeys(str(p.candidate.activation.name) for p in plans))
        source = self.context.calibration_data
        assert source is not None
        for batch in iter_activations(model, names, source):
            for plan in plans:
                activation = batch[str(plan.candidate.activation.name)]
                assert plan.moments is not None
                for s, rows in plan.candidate.vectors(activation):
                    plan.moments[s].update(rows)

    def _whitening(self, plan: LayerPlan, s: int) -> Whitening:
        opts: LowRankOptions = self.options
        assert plan.moments is not None
        acc = plan.moments[s]
        moment = acc.second_moment(centered=opts.bias_correction)
        if acc.diagonal:
            return Whitening.diagonal(moment, opts.damp)
        return Whitening.from_moment(moment, opts.damp)

    def _apply(self, plan: LayerPlan, data_aware: bool, taken: set[str]) -> dict[str, Any]:
        """Rewrite one layer at its chosen rank; returns its report entry."""
        opts: LowRankOptions = self.options
        cand = plan.candidate
        rank = plan.rank
        assert rank is not None
        factors = [d.factors(rank) for d in plan.decompositions]
        correct = data_aware and opts.bias_correction and plan.moments is not None
        correction = None
        if correct:
            assert plan.moments is not None
            correction = np.stack([
                (w - a @ b) @ acc.mean
                for w, (a, b), acc in zip(cand.matrices, factors, plan.moments, strict=True)
            ])
        entry = _errors(plan, factors, centered=correct)
        if data_aware and plan.moments is not None:
            plain = [decompose(w).factors(rank) for w in cand.matrices]
            entry["plain_output_error"] = _errors(plan, plain, centered=False)["output_error"]
        params_before = cand.params
        name, kind, shape = cand.name, cand.kind, cand.shape
        cand.rewrite(factors, correction, taken)
        self.stats[f"factorized_{kind}"] += 1
        slices, m, n = shape
        entry.update({
            "name": name,
            "kind": kind,
            "shape": [m, n] if slices == 1 else [slices, m, n],
            "rank": rank,
            "full_rank": min(m, n),
            "params_before": params_before,
            "params_after": cand.params_at(rank),
            "mac_ratio": round(cand.mac_ratio(rank), 4),
            "whitening": _whitening_kind(plan, data_aware),
        })
        return entry

    def _summary(
        self,
        plans: Sequence[LayerPlan],
        layers: list[dict[str, Any]],
        refused: dict[str, str],
        data_aware: bool,
    ) -> dict[str, Any]:
        eligible = sum(p.candidate.params for p in plans)
        before = sum(e["params_before"] for e in layers)
        after = sum(e["params_after"] for e in layers)
        return {
            "mode": "data-aware" if data_aware else "plain",
            "criterion": self.options.criterion(),
            "eligible_params": eligible,
            "factorized_params_before": before,
            "factorized_params_after": after,
            "eligible_ratio": round((eligible - before + after) / eligible, 4) if eligible else 1,
            "layers": layers,
            "skipped": refused,
        }


def _whitening_kind(plan: LayerPlan, data_aware: bool) -> str:
    if not data_aware:
        return "none"
    return plan.decompositions[0].whitening.kind if plan.decompositions[0].whitening else "none"


def _errors(
    plan: LayerPlan, factors: list[tuple[np.ndarray, np.ndarray]], centered: bool
) -> dict[str, Any]:
    """Relative weight error, and relative output error on the calibration data if known."""
    num = den = out_num = out_den = 0.0
    for s, (w, (a, b)) in enumerate(zip(plan.candidate.matrices, factors, strict=True)):
        delta = w - a @ b
        num += float(np.sum(delta**2))
        den += float(np.sum(w**2))
        if plan.moments is not None:
            acc = plan.moments[s]
            error_moment = acc.second_moment(centered=centered)
            signal_moment = acc.second_moment(centered=False)
            out_num += _quadratic(delta, error_moment)
            out_den += _quadratic(w, signal_moment)
    result: dict[str, Any] = {"weight_error": round(float(np.sqrt(num / den)) if den else 0.0, 6)}
    if plan.moments is not None:
        rel = float(np.sqrt(max(out_num, 0.0) / out_den)) if out_den > 0 else 0.0
        result["output_error"] = round(rel, 6)
    return result


def _quadratic(matrix: np.ndarray, moment: np.ndarray) -> float:
    """``trace(M C M^T)`` for a full or diagonal (vector) second moment ``C``."""
    if moment.ndim == 1:
        return float(np.sum(matrix**2 * moment[None, :]))
    return float(np.einsum("ij,jk,ik->", matrix, moment, matrix))


def _remove_unused_weights(graph: ir.Graph, rewritten: Sequence[Candidate]) -> None:
    """Drop the original weights of rewritten layers once nothing reads them."""
    for cand in rewritten:
        value = cand.node.inputs[cand.layout.weight_input] if cand.node.inputs else None
        if value is None or value.uses() or value.is_graph_output():
            continue
        if value.name in graph.initializers and graph.initializers[value.name] is value:
            del graph.initializers[value.name]

