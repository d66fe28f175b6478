"""The INT8 flow of the ``quantize`` pass: prepare, calibrate, insert, recover, check speed.

Candidates are built on copies of the prepared float model and only the final choice is
written into the caller's model, so a failure anywhere leaves the input untouched apart from
the float-equivalent preparation (opset upgrade, BatchNorm folding, node names).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx_ir as ir

from irpass.analysis.shapes import inferred_values
from irpass.context import FeedSource, limit_samples
from irpass.errors import UnsupportedModelError
from irpass.ir import default_opset

from . import recover, speed
from .calibrate import Calibration, calibrate
from .equalize import cross_layer_equalize, smooth_quant
from .granularity import per_tensor_depthwise
from .insert_qdq import QuantizedWeight, insert_qdq, resolve_tensor_params
from .layer_forms import apply_forms
from .plan import QuantPlan, make_plan, name_nodes
from .rules import RuleSet

if TYPE_CHECKING:
    from .quantize import QuantizePass

__all__ = ["Int8Builder", "element_types", "prepare", "quantize_int8"]

logger = logging.getLogger(__name__)

#: Samples used to measure fidelity and sensitivity when deciding fallbacks.
FIDELITY_SAMPLES = 256


def prepare(model: ir.Model, rules: RuleSet, stats: Any) -> bool:
    """Float-equivalent rewrites quantization needs: opset >= rules.min_opset, BN folded."""
    from irpass.passes.canonicalize.upgrade_opset import UpgradeOpsetPass
    from irpass.passes.fusion.fold_batchnorm import FoldBatchNormPass

    modified = False
    opset = default_opset(model) or 0
    if opset < rules.min_opset:
        target = max(rules.min_opset, 17)
        upgrade = UpgradeOpsetPass(UpgradeOpsetPass.Options(target=target))
        if not upgrade(model).modified:
            raise UnsupportedModelError(
                f"the model is at opset {opset} and could not be upgraded to {target}; "
                "per-channel QDQ needs opset 13",
                hint="upgrade it first (irpass optimize --passes upgrade_opset) and look at the "
                "converter's error",
            )
        stats["upgraded_opset"] = target
        modified = True
    if any(node.op_type == "BatchNormalization" for node in model.graph):
        fold = FoldBatchNormPass()
        if fold(model).modified:
            stats["folded_batchnorm"] = sum(fold.stats.values())
            modified = True
    if name_nodes(model.graph):
        modified = True
    return modified


@dataclasses.dataclass
class Int8Builder:
    """Builds quantized candidates from one prepared float model and one calibration."""

    float_model: ir.Model
    rules: RuleSet
    exclude: frozenset[str]
    per_channel: bool
    dtypes: Mapping[str, ir.DataType | None]
    ranges: Mapping[str, tuple[float, float]]
    weights: dict[str, QuantizedWeight] = dataclasses.field(default_factory=dict)
    bias_delta: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    #: Nodes whose weights get one scale although the rule set allows one per channel.
    per_tensor: frozenset[str] = frozenset()
    #: Another int8 form (:mod:`.layer_forms`) for a node when the plan keeps it float.
    forms: dict[str, str] = dataclasses.field(default_factory=dict)

    def plan(self, fallback: Collection[str] = ()) -> QuantPlan:
        """The plan with ``fallback`` nodes kept float on top of the user's exclusions."""
        return make_plan(
            self.float_model,
            self.rules,
            exclude=self.exclude | frozenset(fallback),
            per_channel=self.per_channel,
            dtypes=self.dtypes,
            per_tensor=self.per_tensor,
        )

    def build(
        self,
        fallback: Collection[str] = (),
        target: ir.Model | None = None,
        *,
        forms: Mapping[str, str] | None = None,
    ) -> ir.Model:
        """A quantized copy (or ``target`` rewritten in place) with ``fallback`` kept float.

        Fallback nodes named in ``forms`` (default :attr:`forms`) take that int8 form instead.
        """
        model = target if target is not None else self.float_model.clone()
        plan = self.plan(fallback)
        params = resolve_tensor_params(model, plan, self.ranges)
        weights = {k: v for k, v in self.weights.items() if k in plan.nodes}
        insert_qdq(model, plan, params, weights=weights, bias_delta=self.bias_delta)
        forms = self.forms if forms is None else forms
        if forms:
            apply_forms(model, {k: v for k, v in forms.items() if k not in plan.nodes})
        return model


def element_types(model: ir.Model) -> dict[str, ir.DataType | None]:
    """Element type of every value ONNX shape inference can type (the planner's input)."""
    return {name: info[1] for name, info in inferred_values(model).items()}


def quantize_int8(model: ir.Model, pass_: QuantizePass) -> bool:
    """Run the INT8 flow on ``model`` in place; returns whether it changed."""
    options = pass_.options
    stats = pass_.stats
    rules = pass_.rules()
    source: FeedSource = pass_.calibration_source()
    if options.calib_samples is not None:
        source = limit_samples(source, options.calib_samples)
    modified = prepare(model, rules, stats)
    dtypes = element_types(model)
    full = make_plan(
        model, rules, exclude=options.exclude, per_channel=options.per_channel, dtypes=dtypes
    )
    if not full.nodes:
        logger.info("quantize: nothing to quantize under rules %s", rules.name)
        stats["quantized_layers"] = 0
        _record_plan(pass_.details, full, [])
        return modified
    if _rescale(model, full, source, options, stats):
        modified = True
        # rescaling gave layers new private weights: plan (and calibrate) what is there now
        dtypes = element_types(model)
        full = make_plan(
            model, rules, exclude=options.exclude, per_channel=options.per_channel, dtypes=dtypes
        )
    names = full.activations()
    started = time.perf_counter()
    calibration: Calibration = calibrate(
        model, names, source, progress=pass_.progress("calibrating")
    )
    logger.info("quantize: calibration %.1f s", time.perf_counter() - started)
    stats["calibration_samples"] = calibration.samples
    ranges = calibration.ranges(
        options.method,
        levels=rules.activations.levels,
        symmetric=rules.symmetric_activations,
        percentile=options.percentile,
    )
    dtypes.update({n: ir.DataType.from_numpy(d) for n, d in calibration.dtypes.items()})
    float_model = model.clone()
    builder = Int8Builder(
        float_model, rules, frozenset(options.exclude), options.per_channel, dtypes, ranges
    )
    budget = recover.Budget(options.max_drop, options.min_cosine, options.min_sqnr)
    fidelity_source = limit_samples(source, FIDELITY_SAMPLES)
    if options.depthwise_per_tensor == "auto":
        builder.per_tensor = per_tensor_depthwise(builder, fidelity_source, stats, pass_.details)
    layers: dict[str, recover.LayerStats] = {}
    if options.bias_correction or budget.active:
        started = time.perf_counter()
        layers = recover.layer_statistics(builder, fidelity_source)
        logger.info("quantize: shadow layers %.1f s", time.perf_counter() - started)
    if options.bias_correction:
        builder.bias_delta = recover.bias_correction(layers, stats)
    fallback: list[str] = []
    if budget.active:
        started = time.perf_counter()
        sensitivity = {name: layer.sqnr_db for name, layer in layers.items()}
        fallback = recover.fallback_search(
            builder, fidelity_source, budget, sensitivity, stats, pass_.details
        )
        logger.info("quantize: fallback search %.1f s", time.perf_counter() - started)
    if options.never_slower and rules.name.startswith("ort"):
        started = time.perf_counter()
        verdict = speed.keep_float_where_slower(
            builder,
            fallback,
            fidelity_source,
            calibration,
            stats,
            pass_.details,
            alternatives=options.alternatives,
        )
        if verdict is None:  # even the best mix is slower than float: ship float
            stats["quantized_layers"] = 0
            _record_plan(pass_.details, builder.plan(list(full.nodes)), list(full.nodes))
            return modified
        fallback = verdict
        _check_forms(builder, fallback, fidelity_source, budget, stats)
        logger.info("quantize: speed checks %.1f s", time.perf_counter() - started)
    final_plan = builder.plan(fallback)
    builder.build(fallback, target=model)
    for form in sorted(set(builder.forms.values())):
        stats[f"{form}_layers"] = sum(
            1 for k, v in builder.forms.items() if v == form and k not in final_plan.nodes
        )
    stats["quantized_layers"] = len(final_plan.linear())
    stats["quantized_nodes"] = len(final_plan.nodes)
    stats["fallback_layers"] = len(fallback)
    _record_plan(pass_.details, final_plan, fallback)
    return True


def _check_forms(
    builder: Int8Builder,
    fallback: Collection[str],
    source: FeedSource,
    budget: recover.Budget,
    stats: Any,
) -> None:
    """Drop the speed-chosen dynamic / int8w forms if the model with them is out of budget.

    The fallback search measured fidelity without them; those layers are then float.
    """
    used = {k: v for k, v in builder.forms.items() if k in fallback}
    builder.forms = used
    if not used or not budget.active:
        return
    metrics = recover.fidelity(builder.float_model, builder.build(fallback), source)
    if not budget.met(metrics):
        logger.info("quantize: dynamic/int8w forms out of the fidelity budget (%s)", metrics)
        stats["forms_over_budget"] = len(used)
        builder.forms = {}


def _rescale(
    model: ir.Model, plan: QuantPlan, source: FeedSource, options: Any, stats: Any
) -> bool:
    """CLE and SmoothQuant as asked; reverted when the float outputs moved (a safety net)."""
    per_tensor = any(p.weight_axis is None for p in plan.linear())
    wanted_cle = options.equalize == "on" or (options.equalize == "auto" and per_tensor)
    if not wanted_cle and options.smooth_quant is None:
        return False
    before = model.clone()
    changed = 0
    if wanted_cle:
        stats["equalized_pairs"] = cross_layer_equalize(model)
        changed += stats["equalized_pairs"]
    if options.smooth_quant is not None:
        changed += smooth_quant(
            model, plan, limit_samples(source, FIDELITY_SAMPLES), options.smooth_quant, stats
        )
    if not changed:
        return False
    check = limit_samples(source, 8)
    drift = recover.fidelity(before, model, check)
    if drift["sqnr_db"] < 60.0:
        logger.warning(
            "quantize: rescaling changed the float outputs (%.1f dB); undone", drift["sqnr_db"]
        )
        stats["rescaling_undone"] = 1
        _restore(model, before)
        return False
    return True


def _restore(model: ir.Model, snapshot: ir.Model) -> None:
    # a model's opset imports are its graph's: read them before the graph is swapped, or
    # clearing the (new) graph's imports would empty both
    opsets = dict(snapshot.opset_imports)
    model.graph = snapshot.graph
    model.opset_imports.clear()
    model.opset_imports.update(opsets)


def _record_plan(details: dict[str, Any], plan: QuantPlan, fallback: list[str]) -> None:
    details["plan"] = {
        "rules": plan.rules.name,
        "quantized": sorted(plan.nodes),
        "float": sorted(fallback),
        "skipped": dict(sorted(plan.skipped.items())),
    }
