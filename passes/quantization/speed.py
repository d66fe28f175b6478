"""Never slower than float on ONNX Runtime: per-layer and whole-model latency checks.

Quantized is not always faster: a small layer's integer kernel can lose to ONNX Runtime's
blocked float convolution, and Q/DQ at region borders cost an elementwise pass each. For the
``ort`` rule sets the quantize pass therefore

1. times every quantized layer alone, as the runtime will run it: the float layer (float
   weights, its absorbed activation) against its node unit (``DQ -> op -> Q`` with integer input
   and output, which ONNX Runtime fuses into QLinearConv / QGemm / QLinearMatMul), both with
   ORT's optimizations on, one thread, batch 1, interleaved runs; a layer whose integer form
   is not faster stays float;
2. times the whole candidate against the float model (:func:`irpass.bench.measure_latency`,
   interleaved with an A/A control); while the candidate is slower by more than the noise,
   the layers with the smallest measured gain go back to float (half of the remaining ones per
   round), and if no mix is faster the model stays float. Among the candidates that are not
   slower, the one with the fewest weight bytes wins unless another is faster by more than the
   run's noise (the A/A gap and the spread: a difference that is not real buys no bytes), as
   long as it is not slower than float by more than the A/A gap.

Timings depend on the machine and its load, so the layers this keeps float can differ from run
to run; ``never_slower=false`` makes the pass deterministic (and the decisions are listed in the
pass details). :class:`LatencyProbe` is the measuring interface; tests substitute their own.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import numpy as np
import onnx_ir as ir

from irpass.bench import measure_latency
from irpass.context import FeedSource
from irpass.ir import initializer_bytes

from .insert_qdq import insert_qdq, resolve_tensor_params
from .plan import NodePlan, QuantPlan

if TYPE_CHECKING:
    from .calibrate import Calibration
    from .int8 import Int8Builder

__all__ = [
    "LatencyProbe",
    "OrtLatencyProbe",
    "Timing",
    "keep_float_where_slower",
    "layer_models",
]

logger = logging.getLogger(__name__)


class Timing(NamedTuple):
    """One candidate's latency against the baseline, from one interleaved run."""

    #: median / baseline median (below 1: faster)
    ratio: float
    #: whether the difference to the baseline is beyond the run's noise
    real: bool
    #: relative difference to another median of this run that is still noise, as
    #: :meth:`irpass.bench.LatencyReport.is_real` has it: the A/A gap, half this
    #: measurement's spread, at least 1 %
    tolerance: float = 0.0
    #: the run's A/A gap alone (at least 1 %; 0 without an A/A control)
    noise: float = 0.0


class LatencyProbe(Protocol):
    """Times candidates against a baseline on the same feeds."""

    def ratios(
        self,
        baseline: ir.Model,
        candidates: Mapping[str, ir.Model],
        feeds: Mapping[str, np.ndarray],
        *,
        whole: bool,
    ) -> dict[str, Timing]:
        """Per candidate its :class:`Timing` against ``baseline``."""
        ...


class OrtLatencyProbe:
    """Times models with :func:`irpass.bench.measure_latency` (ORT CPU, one thread)."""

    def __init__(self, layer_repeats: int = 60, model_repeats: int = 100) -> None:
        self.layer_repeats = layer_repeats
        self.model_repeats = model_repeats

    def ratios(
        self,
        baseline: ir.Model,
        candidates: Mapping[str, ir.Model],
        feeds: Mapping[str, np.ndarray],
        *,
        whole: bool,
    ) -> dict[str, Timing]:
        """Interleaved medians; whole models also get the A/A control that sets the noise."""
        report = measure_latency(
            {"float": baseline, **candidates},
            feeds,
            threads=1,
            warmup=5,
            repeats=self.model_repeats if whole else self.layer_repeats,
            aa_control=whole,
        )
        return {
            name: Timing(
                report.ratio("float", name),
                report.is_real("float", name),
                max(report.noise or 0.0, report.stats[name].spread / 2, 0.01),
                max(report.noise, 0.01) if report.noise is not None else 0.0,
            )
            for name in candidates
        }


def _fixed_batch(value: ir.Value | None) -> bool:
    """Whether ``value`` declares a number as its first dimension (its batch cannot change)."""
    shape = value.shape if value is not None else None
    return shape is not None and shape.rank() > 0 and isinstance(shape[0], int)


def _one_sample_shape(value: ir.Value, shape: Sequence[int]) -> tuple[int, ...]:
    """``shape`` with a batch of 1, unless the value declares its first dimension."""
    if not shape or _fixed_batch(value):
        return tuple(shape)
    return (1, *shape[1:])


def _single_sample(feed: Mapping[str, np.ndarray], model: ir.Model) -> dict[str, np.ndarray]:
    """The first sample of ``feed`` for inputs whose batch is free, the feed as is otherwise."""
    inputs = {v.name: v for v in model.graph.inputs}
    return {
        k: np.asarray(v)[:1] if np.ndim(v) and not _fixed_batch(inputs.get(k)) else np.asarray(v)
        for k, v in feed.items()
    }


def _random_feed(value: ir.Value, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    if value.dtype == ir.DataType.UINT8:
        return rng.integers(0, 256, size=shape).astype(np.uint8)
    if value.dtype == ir.DataType.INT8:
        return rng.integers(-128, 128, size=shape).astype(np.int8)
    return rng.standard_normal(shape).astype(np.float32)


def layer_models(
    builder: Int8Builder,
    plan: QuantPlan,
    node_plan: NodePlan,
    shapes: Mapping[str, tuple[int, ...]],
) -> tuple[ir.Model, ir.Model, dict[str, np.ndarray], dict[str, np.ndarray]] | None:
    """The float layer, its quantized node unit, and a batch-1 input for each.

    The quantized model takes and returns integers when its neighbours do (input produced by
    a quantized node, output quantized), so the timing is that of the fused kernel in place.
    A value that declares a fixed first dimension keeps its calibrated batch. None when a
    layer input has neither a shape nor a type known (the layer is then not timed alone).
    """
    graph = builder.float_model.graph
    node = next(n for n in graph if n.name == node_plan.name)
    data = [node.inputs[slot] for slot in node_plan.inputs]
    if any(v is None or not v.name or v.name not in shapes for v in data):
        return None
    ops = [node]
    if node_plan.absorbed is not None:
        ops.append(next(n for n in graph if n.name == node_plan.absorbed))
    float_model = _extract(builder.float_model, ops, data)
    for value in float_model.graph.inputs:
        if value.type is None:  # an untyped input makes ONNX Runtime refuse the model
            dtype = builder.dtypes.get(value.name or "")
            if dtype is None:
                return None
            value.type = ir.TensorType(dtype)
    quant = float_model.clone()
    wanted = _tensors_of(node_plan, node)
    sub_plan = QuantPlan(
        plan.rules,
        {node_plan.name: node_plan},
        {t: plan.tensors[t] for t in wanted if t in plan.tensors},
        {},
    )
    params = resolve_tensor_params(builder.float_model, plan, builder.ranges)
    insert_qdq(quant, sub_plan, {k: params[k] for k in sub_plan.tensors})
    renamed = _integer_boundaries(quant, plan, node_plan)
    rng = np.random.default_rng(0)
    float_feeds = {
        v.name or "": _random_feed(v, _one_sample_shape(v, shapes[v.name or ""]), rng)
        for v in float_model.graph.inputs
    }
    quant_feeds = {
        v.name or "": _random_feed(
            v, _one_sample_shape(v, shapes[renamed.get(v.name or "", v.name or "")]), rng
        )
        for v in quant.graph.inputs
    }
    return float_model, quant, float_feeds, quant_feeds


def _tensors_of(node_plan: NodePlan, node: ir.Node) -> list[str]:
    names = [v.name or "" for v in (node.inputs[s] for s in node_plan.inputs) if v is not None]
    if node_plan.output:
        names.append(node_plan.output)
    return names


def _extract(model: ir.Model, ops: Sequence[ir.Node], data: Sequence[ir.Value | None]) -> ir.Model:
    """A model of just ``ops`` (sharing weights), the ``data`` values as its inputs."""
    names = [v.name or "" for v in data if v is not None]
    graph = ir.convenience.extract(model.graph, names, [ops[-1].outputs[0]])
    graph.opset_imports.update(model.opset_imports)
    return ir.Model(graph, ir_version=model.ir_version)


def _integer_boundaries(model: ir.Model, plan: QuantPlan, node_plan: NodePlan) -> dict[str, str]:
    """Feed the node unit integers (and return its integers) where the full plan does.

    Returns the new integer input names with the float tensor each stands for.
    """
    graph = model.graph
    renamed: dict[str, str] = {}
    produced = {p.output for p in plan.nodes.values() if p.output}
    for index, value in enumerate(list(graph.inputs)):
        if value.name not in produced:
            continue
        q = next((u for u, _ in value.uses() if u.op_type == "QuantizeLinear"), None)
        if q is None or len(value.uses()) != 1:
            continue
        quantized = q.outputs[0]
        integer = ir.Value(name=f"{value.name}_integer", shape=value.shape, type=quantized.type)
        quantized.replace_all_uses_with(integer)
        graph.remove(q, safe=True)
        graph.inputs[index] = integer
        renamed[integer.name or ""] = value.name or ""
    if node_plan.output is None:
        return renamed
    for index, value in enumerate(list(graph.outputs)):
        producer = value.producer()
        if producer is None or producer.op_type != "DequantizeLinear":
            continue
        codes = producer.inputs[0]
        assert codes is not None
        graph.outputs[index] = codes
        if not value.uses():
            graph.remove(producer, safe=True)
    return renamed


def keep_float_where_slower(
    builder: Int8Builder,
    fallback: Sequence[str],
    source: FeedSource,
    calibration: Calibration,
    stats: Any,
    details: dict[str, Any],
    probe: LatencyProbe | None = None,
    alternatives: Sequence[str] = (),
) -> list[str] | None:
    """The layers to keep float so that the model is fastest and never slower than float.

    Returns ``fallback`` extended by the layers speed decided on, or None when no mix of
    quantized layers beats the float model. ``alternatives`` (forms of :mod:`.layer_forms`)
    are timed per MatMul/Gemm layer too, and whole-model candidates give the layers static
    QDQ leaves float those forms; ``builder.forms`` is set to the chosen candidate's.
    """
    probe = probe or OrtLatencyProbe()
    plan = builder.plan(fallback)
    gains: dict[str, float] = {}
    form_ratios: dict[str, dict[str, float]] = {}
    faster_alone: dict[str, str] = {}  # the fastest form that beats the float layer alone
    for node_plan in plan.linear():
        models = layer_models(builder, plan, node_plan, calibration.shapes)
        if models is None:
            continue
        float_layer, quant_layer, float_feeds, quant_feeds = models
        measured = probe.ratios(
            float_layer, {"int8": quant_layer}, {**float_feeds, **quant_feeds}, whole=False
        )
        gains[node_plan.name] = measured["int8"].ratio
        if alternatives and node_plan.op_type in ("MatMul", "Gemm"):
            timed = _time_forms(probe, float_layer, float_feeds, node_plan.name, alternatives)
            form_ratios[node_plan.name] = {f: round(t.ratio, 3) for f, t in timed.items()}
            faster = {f: t.ratio for f, t in timed.items() if t.ratio < 1.0 and t.real}
            if faster:
                faster_alone[node_plan.name] = min(faster, key=lambda f: (faster[f], f))
    details["layer_latency_ratio"] = {k: round(v, 3) for k, v in sorted(gains.items())}
    if form_ratios:
        details["layer_form_latency_ratio"] = dict(sorted(form_ratios.items()))
    # the least gain first: these are the layers to give back when int8 loses overall
    order = sorted(gains, key=lambda n: (-gains[n], n))
    slow = [n for n in order if gains[n] >= 1.0]
    dynamic = {n for n, r in form_ratios.items() if "dynamic" in r}
    feeds = _single_sample(next(iter(source())), builder.float_model)
    # name -> (layers kept out of static QDQ, the forms those layers take)
    candidates: dict[str, tuple[list[str], dict[str, str]]] = {"all": (list(fallback), {})}
    if slow:
        candidates["per_layer"] = (list(fallback) + slow, faster_alone)
        if any(n in faster_alone for n in slow):
            candidates["per_layer_float"] = (list(fallback) + slow, {})
        # a layer's gain alone is noisy and misses the Q/DQ its neighbours save: the whole
        # model decides whether the slow layers are better off dynamic
        if dynamic & set(slow):
            candidates["per_layer_dynamic"] = (
                list(fallback) + slow,
                {**faster_alone, **dict.fromkeys(dynamic & set(slow), "dynamic")},
            )
    if dynamic:  # what quantize_dynamic gives: every weighted MatMul/Gemm dynamic, no QDQ
        candidates["dynamic"] = (list(fallback) + order, dict.fromkeys(dynamic, "dynamic"))
    remaining = [n for n in order if n not in slow]
    base = list(fallback) + slow
    history = details.setdefault("model_latency_ratio", {})
    while True:  # halving the remaining layers: log2(layers) rounds at most
        built = {
            name: builder.build(layers, forms=forms) for name, (layers, forms) in candidates.items()
        }
        measured = probe.ratios(builder.float_model, built, feeds, whole=True)
        history.update(
            {
                f"{name}/{len(candidates[name][0])}": round(t.ratio, 3)
                for name, t in measured.items()
            }
        )
        acceptable = [n for n, t in measured.items() if t.ratio < 1.0 or not t.real]
        if acceptable:
            best = _smallest_of_the_fastest(acceptable, measured, built)
            chosen, builder.forms = candidates[best][0], dict(candidates[best][1])
            stats["kept_float_speed"] = len(chosen) - len(fallback)
            return chosen
        if not remaining:
            break
        half = max(1, len(remaining) // 2)
        base = base + remaining[:half]
        candidates = {"fewer": (base, faster_alone)}
        remaining = remaining[half:]
    builder.forms = {}
    stats["kept_float_slower"] = 1
    logger.warning("quantize: the int8 model is not faster than float on this machine; kept float")
    return None


def _time_forms(
    probe: LatencyProbe,
    float_layer: ir.Model,
    feeds: Mapping[str, np.ndarray],
    name: str,
    forms: Sequence[str],
) -> dict[str, Timing]:
    """The float layer against each of its ``forms`` that applies (same float feeds)."""
    from .layer_forms import apply_forms

    built: dict[str, ir.Model] = {}
    for form in forms:
        model = float_layer.clone()
        if not apply_forms(model, {name: form}):
            built[form] = model
    if not built:
        return {}
    return probe.ratios(float_layer, built, feeds, whole=False)


def _smallest_of_the_fastest(
    names: Sequence[str], measured: Mapping[str, Timing], built: Mapping[str, ir.Model]
) -> str:
    """The candidate with the fewest weight bytes among those as fast as the fastest.

    "As fast" is within the run's noise (the A/A gap and the measurements' spread, as
    :meth:`irpass.bench.LatencyReport.is_real` has it): a difference that is not real does not
    justify a larger model. A candidate slower than float by more than the A/A gap is not
    taken for being small, however wide its spread.
    """
    fastest = min(names, key=lambda n: measured[n].ratio)
    best = measured[fastest]
    tied = [fastest] + [
        n
        for n in names
        # a spread wide enough to hide a real loss against float buys no bytes either
        if measured[n].ratio <= 1.0 + measured[n].noise
        and math.log(measured[n].ratio / best.ratio)
        <= math.log1p(max(measured[n].tolerance, best.tolerance))
    ]
    return min(tied, key=lambda n: (initializer_bytes(built[n]), measured[n].ratio, n))
