"""The low-rank engine shared by ``svd``, ``factorize_gemm`` and ``factorize_conv``.

One run:

1. find candidate layers; drop those that cannot save ``min_saving`` at any allowed rank;
2. with calibration data, stream it once to accumulate each layer's input moments;
3. decompose every weight (plain SVD, or whitened by its input moments when data-aware) and
   choose ranks from those spectra (energy, explicit rank, or a model-wide parameter ratio;
   data-aware, the ratio weighs each layer by its measured effect on the model's outputs,
   :mod:`~irpass.passes.lowrank.sensitivity`);
4. rewrite the chosen layers. Data-aware and ``sequential`` (the default), layers go in
   waves by depth: a wave whose inputs depend on already factorized layers is refit to the
   original model's outputs given the inputs it now receives (one more pass over the
   calibration data per wave, running the original and the current model side by side), so
   each layer compensates the error of the layers before it;
5. report per layer: rank, parameters, weight error and, with calibration data, the relative
   output error of the layer on the original inputs for this mode and for plain SVD at the
   same rank (and, sequential, the error that reaches its output through the upstream layers).
"""

from __future__ import annotations

import abc
import collections
import dataclasses
import fnmatch
import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import onnx_ir as ir

from irpass.analysis.activations import iter_activations
from irpass.errors import DataError
from irpass.pass_base import IrpassPass, option
from irpass.passes.lowrank.decompose import (
    Whitening,
    decompose,
    regression_target,
    singular_values,
)
from irpass.passes.lowrank.layer import Candidate
from irpass.passes.lowrank.moments import MomentAccumulator, PairedMoments
from irpass.passes.lowrank.rank import LayerSpectrum, allowed_ranks, select_ranks
from irpass.passes.lowrank.sensitivity import Probe, measure_sensitivities, normalized

__all__ = ["LayerPlan", "LowRankOptions", "LowRankPass"]

logger = logging.getLogger("irpass.passes.lowrank")

#: Energy kept per layer when no criterion is given.
DEFAULT_ENERGY = 0.99


@dataclasses.dataclass(frozen=True)
class LowRankOptions:
    """Options of the low-rank passes (at most one of energy, ratio, rank, ranks).

    Without any of the three, each layer keeps 99 % of its (whitened) spectral energy.
    """

    energy: float | None = option(
        None, "keep this fraction of each layer's (whitened) singular-value energy")
    ratio: float | None = option(
        None, "remove this fraction of the factorizable layers' parameters (0.3: 30 % "
        "fewer), ranks allocated across layers by error")
    rank: int | None = option(None, "this rank for every layer (capped where it would not save)")
    ranks: list[str] = option(
        [], "explicit ranks as name:rank; only these layers are factorized (e.g. to compare "
        "plain SVD at the ranks a data-aware run chose)")
    round_to: int = option(8, "ranks are multiples of this")
    data_aware: bool | None = option(
        None, "whiten by calibration activations (default: when calibration data is given)")
    min_saving: float = option(
        0.2, "factorize a layer only if it saves at least this fraction of params and MACs")
    ignore: list[str] = option([], "node names or op types (fnmatch patterns) to leave alone")
    bias_correction: bool = option(
        True, "data-aware: add the mean output error to the bias (centered whitening)")
    damp: float = option(0.01, "data-aware: eigenvalue damping, fraction of the mean")
    sequential: bool = option(
        True, "data-aware: refit each layer to the original outputs given the already "
        "factorized layers upstream (one pass over the calibration data per depth level)")
    sensitivity: bool = option(
        True, "data-aware ratio: weigh each layer's error by its measured effect on the "
        "model's outputs (one model run per layer on up to 128 calibration samples)")
    spatial: bool = option(False, "Conv kxk: factor as kx1 then 1xk instead of kxk then 1x1")
    max_whiten_features: int = option(
        4096, "inputs wider than this are whitened per feature (diagonal) to bound memory")

    def __post_init__(self) -> None:
        given = [n for n in ("energy", "ratio", "rank") if getattr(self, n) is not None]
        given += ["ranks"] if self.ranks else []
        if len(given) > 1:
            raise ValueError(f"give one of energy, ratio, rank, ranks (got {', '.join(given)})")
        self.layer_ranks()
        if self.energy is not None and not 0 < self.energy <= 1:
            raise ValueError(f"energy must be in (0, 1], got {self.energy}")
        if self.ratio is not None and not 0 < self.ratio < 1:
            raise ValueError(f"ratio must be in (0, 1), got {self.ratio}")
        if self.rank is not None and self.rank < 1:
            raise ValueError(f"rank must be >= 1, got {self.rank}")
        if self.round_to < 1:
            raise ValueError(f"round_to must be >= 1, got {self.round_to}")
        if not 0 <= self.min_saving < 1:
            raise ValueError(f"min_saving must be in [0, 1), got {self.min_saving}")
        if self.damp < 0:
            raise ValueError(f"damp must be >= 0, got {self.damp}")

    def layer_ranks(self) -> dict[str, int]:
        """``ranks`` as a mapping (ValueError on a malformed item)."""
        parsed: dict[str, int] = {}
        for item in self.ranks:
            name, sep, value = item.rpartition(":")
            if not sep or not name or not value.isdigit() or int(value) < 1:
                raise ValueError(f"ranks items are name:rank with rank >= 1, got {item!r}")
            parsed[name] = int(value)
        return parsed

    def criterion(self) -> dict[str, Any]:
        """The rank criterion as keyword arguments of :func:`select_ranks`."""
        if self.ranks:
            return {"ranks": self.layer_ranks()}
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
    #: Moments of the layer's inputs in the original model, one per slice.
    moments: list[MomentAccumulator] | None = None
    #: Sequential mode: inputs received once upstream layers are factorized, vs. the original.
    paired: list[PairedMoments] | None = None
    #: Per slice: the whitening of data-aware mode (None: plain SVD).
    whitenings: list[Whitening | None] = dataclasses.field(default_factory=list)
    #: Squared singular values of the (whitened) weight, summed over slices.
    energy: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))
    rank: int | None = None
    #: Weight of the layer's error in the ratio allocation (measured, else 1).
    sensitivity: float = 1.0

    def spectrum(self) -> LayerSpectrum:
        """What rank selection needs."""
        energy = self.energy
        c = self.candidate
        return LayerSpectrum(c.name, energy, c.params, c.params_at(1), self.max_rank,
                             self.sensitivity)


class LowRankPass(IrpassPass):
    """Base of the low-rank passes: subclasses say which candidates they look for."""

    _abstract = True
    lossless = False
    Options = LowRankOptions
    #: Bodies of If/Loop/Scan are left alone: their activations cannot be calibrated.
    recurses_into_subgraphs = False

    @abc.abstractmethod
    def find(self, graph: ir.Graph) -> tuple[list[Candidate], dict[str, str]]:
        """Candidate layers of ``graph`` and, by node name, why other layers are not."""

    def call(self, model: ir.Model) -> ir.passes.PassResult:  # noqa: D102
        opts: LowRankOptions = self.options
        data_aware = self._data_aware()
        plans, refused = self._plans(model.graph)
        self.stats["candidates"] = len(plans)
        if not plans:
            self.stats["skipped"] = len(refused)
            self.details = self._summary([], [], refused, data_aware)
            return ir.passes.PassResult(model, False)
        if self.context.calibration_data is not None:
            self._accumulate(model, plans)
        for plan in plans:
            if data_aware and plan.moments:
                plan.whitenings = [self._whitening(acc) for acc in plan.moments]
            else:
                plan.whitenings = [None] * plan.candidate.shape[0]
            # Rank selection needs singular values only; factors are computed for chosen ranks.
            plan.energy = np.sum([
                singular_values(matrix, whitening) ** 2
                for matrix, whitening in zip(plan.candidate.matrices, plan.whitenings,
                                             strict=True)
            ], axis=0)
        sensitivities: dict[str, float] = {}
        if data_aware and opts.ratio is not None and opts.sensitivity and len(plans) > 1:
            sensitivities = self._sensitivities(model, plans)
        ranks = select_ranks([p.spectrum() for p in plans], round_to=opts.round_to,
                             **opts.criterion())
        chosen = []
        for plan in plans:
            plan.rank = ranks.get(plan.candidate.name)
            if plan.rank is None:
                refused[plan.candidate.name] = (
                    f"factorizing would not save enough at the chosen rank (max {plan.max_rank})"
                )
            else:
                chosen.append(plan)
        self.stats["skipped"] = len(refused)
        sequential = data_aware and opts.sequential and len(chosen) > 1
        reference = model.clone() if sequential else None
        layers: list[dict[str, Any]] = []
        taken: set[str] = set()
        for depth, wave in enumerate(_waves(chosen) if sequential else [chosen]):
            if depth and reference is not None:
                self._refit(reference, model, wave)
            layers.extend(self._apply(plan, data_aware, taken) for plan in wave)
        _remove_unused_weights(model.graph, [p.candidate for p in chosen])
        self.details = self._summary(plans, layers, refused, data_aware)
        if sensitivities:
            self.details["sensitivity"] = normalized(sensitivities)
        return ir.passes.PassResult(model, bool(layers))

    # ------------------------------------------------------------------------------ steps
    def _plans(self, graph: ir.Graph) -> tuple[list[LayerPlan], dict[str, str]]:
        """Candidates that are not ignored and can save ``min_saving``; reasons for the rest."""
        opts: LowRankOptions = self.options
        candidates, refused = self._find_named(graph)
        plans: list[LayerPlan] = []
        for cand in candidates:
            if any(fnmatch.fnmatchcase(name, pattern) for pattern in opts.ignore
                   for name in (cand.name, cand.node.op_type)):
                refused[cand.name] = "ignored (option ignore)"
                continue
            max_rank = cand.max_rank(opts.min_saving)
            if max_rank < opts.round_to:
                refused[cand.name] = (
                    f"factorizing would not save enough: saving {opts.min_saving:.0%} of "
                    f"params and MACs needs rank <= {max_rank}, ranks are multiples of "
                    f"{opts.round_to}"
                )
                continue
            plans.append(LayerPlan(cand, max_rank))
        for name, reason in refused.items():
            logger.debug("not factorizing %s: %s", name, reason)
        return plans, refused

    def _find_named(self, graph: ir.Graph) -> tuple[list[Candidate], dict[str, str]]:
        """:meth:`find` with layer names made unique (node names need not be, in ONNX)."""
        candidates, refused = self.find(graph)
        names = collections.Counter(c.name for c in candidates)
        for cand in candidates:
            if names[cand.name] > 1:
                cand.name = f"{cand.name}:{cand.node.outputs[0].name}"
        return candidates, refused

    def _sensitivities(self, model: ir.Model, plans: list[LayerPlan]) -> dict[str, float]:
        """Probe every layer alone at its smallest rank; set and return sensitivities."""
        opts: LowRankOptions = self.options
        probes: list[Probe] = []
        for plan in plans:
            spectrum = plan.spectrum()
            # The smallest rank the allocation may give: where nonlinear layers downstream
            # (LayerNorm, Softmax) amplify most, which a milder probe would extrapolate away.
            plan.rank = allowed_ranks(spectrum, opts.round_to)[0]
            factors, correction = self._factors(plan, data_aware=True)
            probes.append((plan.candidate.name, spectrum.relative_error(plan.rank),
                           _rewriter(self, plan.candidate.name, factors, correction)))
            plan.rank = None
        source = self.context.calibration_data
        assert source is not None
        found = measure_sensitivities(model, probes, source)
        for plan in plans:
            plan.sensitivity = found.get(plan.candidate.name, 1.0)
        return found

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
        names = list(dict.fromkeys(p.candidate.activation_name for p in plans))
        source = self.context.calibration_data
        assert source is not None
        for batch in iter_activations(model, names, source):
            for plan in plans:
                assert plan.moments is not None
                for s, rows in plan.candidate.vectors(batch[plan.candidate.activation_name]):
                    plan.moments[s].update(rows)

    def _refit(self, reference: ir.Model, model: ir.Model, wave: list[LayerPlan]) -> None:
        """Moments of what ``wave``'s layers receive now, paired with the original inputs."""
        wave = [p for p in wave if p.moments and not p.moments[0].diagonal]
        if not wave:
            return
        for plan in wave:
            slices, _, n = plan.candidate.shape
            plan.paired = [PairedMoments(n) for _ in range(slices)]
        names = list(dict.fromkeys(p.candidate.activation_name for p in wave))
        source = self.context.calibration_data
        assert source is not None
        pairs = zip(iter_activations(reference, names, source),
                    iter_activations(model, names, source), strict=True)
        for original, current in pairs:
            for plan in wave:
                assert plan.paired is not None
                name = plan.candidate.activation_name
                for (s, ref_rows), (_, rows) in zip(plan.candidate.vectors(original[name]),
                                                    plan.candidate.vectors(current[name]),
                                                    strict=True):
                    plan.paired[s].update(ref_rows, rows)

    def _whitening(self, acc: MomentAccumulator) -> Whitening:
        opts: LowRankOptions = self.options
        moment = acc.second_moment(centered=opts.bias_correction)
        if acc.diagonal:
            return Whitening.diagonal(moment, opts.damp)
        return Whitening.from_moment(moment, opts.damp)

    def _factors(
        self, plan: LayerPlan, data_aware: bool
    ) -> tuple[list[tuple[np.ndarray, np.ndarray]], np.ndarray | None]:
        """Factors at the plan's rank and the output correction (data-aware, else None)."""
        opts: LowRankOptions = self.options
        rank = plan.rank
        assert rank is not None
        centered = opts.bias_correction
        if plan.paired is None:
            factors = [
                decompose(w, whitening).factors(rank)
                for w, whitening in zip(plan.candidate.matrices, plan.whitenings, strict=True)
            ]
            if not (data_aware and centered and plan.moments):
                return factors, None
            correction = np.stack([
                (w - a @ b) @ acc.mean
                for w, (a, b), acc in zip(plan.candidate.matrices, factors, plan.moments,
                                          strict=True)
            ])
            return factors, correction
        factors, corrections = [], []
        for w, paired in zip(plan.candidate.matrices, plan.paired, strict=True):
            whitening = self._whitening(paired.received)
            target = regression_target(w, paired.cross(centered), whitening)
            a, b = decompose(target, whitening).factors(rank)
            factors.append((a, b))
            # Mean output of the original layer minus what the new one makes of its inputs.
            corrections.append(w @ paired.reference_mean - a @ (b @ paired.received.mean))
        return factors, np.stack(corrections) if centered else None

    def _apply(self, plan: LayerPlan, data_aware: bool, taken: set[str]) -> dict[str, Any]:
        """Rewrite one layer at its chosen rank; returns its report entry."""
        cand = plan.candidate
        rank = plan.rank
        assert rank is not None
        factors, correction = self._factors(plan, data_aware)
        entry = _errors(plan, factors, correction)
        if data_aware and plan.moments is not None:
            plain = [decompose(w).factors(rank) for w in cand.matrices]
            entry["plain_output_error"] = _errors(plan, plain, None)["output_error"]
        slices, m, n = cand.shape
        entry.update({
            "name": cand.name,
            "weight": cand.weight_value.name if cand.weight_value is not None else None,
            "kind": cand.kind,
            "shape": [m, n] if slices == 1 else [slices, m, n],
            "rank": rank,
            "full_rank": min(m, n),
            "params_before": cand.params,
            "params_after": cand.params_at(rank),
            "mac_ratio": round(cand.mac_ratio(rank), 4),
            "whitening": _whitening_kind(plan, data_aware),
            "refit": plan.paired is not None,
        })
        cand.rewrite(factors, correction, taken)
        self.stats[f"factorized_{cand.kind}"] += 1
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
            # Fraction of the factorizable layers' parameters left (1 - ratio at most).
            "eligible_kept": round((eligible - before + after) / eligible, 4) if eligible else 1,
            "layers": layers,
            "skipped": refused,
        }


def _rewriter(
    engine: LowRankPass, name: str, factors: list[tuple[np.ndarray, np.ndarray]],
    correction: np.ndarray | None,
) -> Callable[[ir.Model], None]:
    """Rewrite layer ``name`` of a copy of the model with ``factors`` (a sensitivity probe)."""
    def rewrite(copy: ir.Model) -> None:
        candidates, _ = engine._find_named(copy.graph)
        found = next(c for c in candidates if c.name == name)
        found.rewrite(factors, correction, set())
    return rewrite


def _waves(plans: list[LayerPlan]) -> list[list[LayerPlan]]:
    """Plans grouped by depth: a plan comes after every chosen layer upstream of its input."""
    by_node = {id(p.candidate.node): p for p in plans}
    depth: dict[int, int] = {}
    for plan in plans:  # graph order, so upstream plans already have a depth
        upstream = _upstream_nodes(plan.candidate.node, by_node)
        depth[id(plan)] = 1 + max((depth[id(by_node[u])] for u in upstream), default=-1)
    waves: dict[int, list[LayerPlan]] = {}
    for plan in plans:
        waves.setdefault(depth[id(plan)], []).append(plan)
    return [waves[d] for d in sorted(waves)]


def _upstream_nodes(node: ir.Node, wanted: dict[int, LayerPlan]) -> set[int]:
    """Ids of the ``wanted`` nodes from which ``node``'s inputs are computed."""
    found: set[int] = set()
    seen: set[int] = set()
    stack = [v for v in node.inputs if v is not None]
    while stack:
        producer = stack.pop().producer()
        if producer is None or id(producer) in seen:
            continue
        seen.add(id(producer))
        if id(producer) in wanted:
            found.add(id(producer))
        stack.extend(v for v in producer.inputs if v is not None)
    return found


def _whitening_kind(plan: LayerPlan, data_aware: bool) -> str:
    whitening = plan.whitenings[0] if plan.whitenings else None
    return whitening.kind if data_aware and whitening is not None else "none"


def _errors(
    plan: LayerPlan,
    factors: list[tuple[np.ndarray, np.ndarray]],
    correction: np.ndarray | None,
) -> dict[str, Any]:
    """Relative errors of the new layer: weight, output, and propagated output.

    The output error is measured on the original inputs (when moments are known); for refit
    layers the propagated error compares with the original outputs given the inputs the layer
    now receives.
    """
    num = den = out_num = out_den = seq_num = 0.0
    for s, (w, (a, b)) in enumerate(zip(plan.candidate.matrices, factors, strict=True)):
        new = a @ b
        delta = w - new
        num += float(np.sum(delta**2))
        den += float(np.sum(w**2))
        c = np.zeros(w.shape[0]) if correction is None else correction[s]
        if plan.moments is not None:
            acc = plan.moments[s]
            moment, mean = acc.second_moment(centered=False), acc.mean
            # E||delta x - c||^2 over the original inputs x.
            out_num += _quadratic(delta, moment) - 2 * float(c @ delta @ mean) + float(c @ c)
            out_den += _quadratic(w, moment)
            if plan.paired is not None:
                p = plan.paired[s]
                # E||W x - new x~ - c||^2 with x the original inputs, x~ the received ones.
                seq_num += (
                    _quadratic(w, moment)
                    + _quadratic(new, p.received.second_moment(centered=False))
                    - 2 * float(np.sum((w @ p.cross(centered=False)) * new))
                    + float(c @ c) - 2 * float(c @ w @ mean)
                    + 2 * float(c @ new @ p.received.mean)
                )
    result: dict[str, Any] = {"weight_error": _ratio(num, den)}
    if plan.moments is not None:
        result["output_error"] = _ratio(out_num, out_den)
        if plan.paired is not None:
            result["propagated_error"] = _ratio(seq_num, out_den)
    return result


def _ratio(num: float, den: float) -> float:
    """``sqrt(num / den)`` rounded for the report (0 for an all-zero reference)."""
    return round(float(np.sqrt(max(num, 0.0) / den)), 6) if den > 0 else 0.0


def _quadratic(matrix: np.ndarray, moment: np.ndarray) -> float:
    """``trace(M C M^T)`` for a full or diagonal (vector) second moment ``C``."""
    if moment.ndim == 1:
        return float(np.sum(matrix**2 * moment[None, :]))
    return float(np.sum((matrix @ moment) * matrix))


def _remove_unused_weights(graph: ir.Graph, rewritten: Sequence[Candidate]) -> None:
    """Drop the original weights of rewritten layers once nothing reads them."""
    for cand in rewritten:
        value = cand.weight_value
        if value is None or not value.name or value.uses() or value.is_graph_output():
            continue
        if value.name in graph.initializers and graph.initializers[value.name] is value:
            del graph.initializers[value.name]
