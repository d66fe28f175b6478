"""Accuracy recovery for INT8: bias correction, per-layer sensitivity, fallback to float.

**Shadow layers**: every quantized layer gets a copy fed by the float model's own activations,
``Q/DQ(x) -> op(DQ(W_int8)) [-> Relu] -> Q/DQ``, so what it measures is the layer's own error,
not what upstream layers pass on; one session and one pass over the data measure all layers.

**Bias correction** (empirical, per layer): quantization noise has a non-zero mean per output
channel (weight rounding ``(W_q - W) E[x]``, activation clipping). The shadow gives
``delta[c] = E[y_float[c]] - E[y_shadow[c]]`` on the op's own output; the delta is added to the
layer's bias (the int32 bias is requantized; a bias is created when the layer had none). Since
each delta is the layer's alone, all layers are corrected at once without double counting
(correcting against the end-to-end quantized model instead over-corrects deep chains).

**Sensitivity**: the SQNR of each shadow output against the float output ranks the layers.

**Fallback**: with a fidelity budget (top-1 disagreement ``max_drop`` in percentage points,
``min_cosine``, ``min_sqnr`` dB, all measured on the model outputs against float over
calibration data), the least accurate layers are kept float: the smallest ``k`` of the
sensitivity ranking that meets the budget, found by doubling then bisection (fidelity is
monotone in ``k`` in practice; the result is checked again).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx_ir as ir

from irpass.analysis.activations import iter_activations
from irpass.analysis.layout import weight_layout
from irpass.context import FeedSource
from irpass.metrics import FidelityAccumulator
from irpass.verify import make_session

from .insert_qdq import QdqWriter, quantize_weight, resolve_tensor_params
from .plan import QuantPlan

if TYPE_CHECKING:
    from .int8 import Int8Builder

__all__ = [
    "Budget",
    "LayerStats",
    "bias_correction",
    "fallback_search",
    "fidelity",
    "layer_sensitivity",
    "layer_statistics",
]

logger = logging.getLogger(__name__)


# ------------------------------------------------------------------------- bias correction
def bias_correction(layers: Mapping[str, LayerStats], stats: Any) -> dict[str, np.ndarray]:
    """Per-layer bias deltas cancelling each layer's own mean output error (see above)."""
    deltas = {
        name: layer.mean_error
        for name, layer in layers.items()
        if layer.mean_error is not None and layer.op_type in ("Conv", "ConvTranspose", "Gemm")
    }
    stats["bias_corrected_layers"] = len(deltas)
    return deltas


# ------------------------------------------------------------------------- fidelity budget
@dataclasses.dataclass(frozen=True)
class Budget:
    """How far the quantized model's outputs may drift from float (None = no limit)."""

    max_drop: float | None = None
    min_cosine: float | None = None
    min_sqnr: float | None = None

    @property
    def active(self) -> bool:
        """Whether any limit is set."""
        return any(v is not None for v in (self.max_drop, self.min_cosine, self.min_sqnr))

    def met(self, metrics: Mapping[str, float]) -> bool:
        """Whether fidelity ``metrics`` (see :func:`fidelity`) are within the budget."""
        if self.max_drop is not None and metrics.get("disagreement_pct", 0.0) > self.max_drop:
            return False
        if self.min_cosine is not None and metrics["cosine"] < self.min_cosine:
            return False
        return not (self.min_sqnr is not None and metrics["sqnr_db"] < self.min_sqnr)


def _run_outputs(model: ir.Model, source: FeedSource) -> Iterator[dict[str, np.ndarray]]:
    session = make_session(model)
    inputs = [i.name for i in session.get_inputs()]
    outputs = [o.name for o in session.get_outputs()]
    for feed in source():
        values = session.run(outputs, {k: np.asarray(feed[k]) for k in inputs})
        yield dict(zip(outputs, values, strict=True))


def fidelity(reference: ir.Model, candidate: ir.Model, source: FeedSource) -> dict[str, float]:
    """Worst-output cosine, SQNR and top-1 disagreement (%) of ``candidate`` vs ``reference``.

    Outputs are matched by position (a rewrite may rename them); top-1 counts only outputs
    whose last axis has more than one entry (class scores).
    """
    accumulators: dict[int, FidelityAccumulator] = {}
    for ref, got in zip(
        _run_outputs(reference, source), _run_outputs(candidate, source), strict=True
    ):
        for index, (r, g) in enumerate(zip(ref.values(), got.values(), strict=True)):
            r, g = np.asarray(r), np.asarray(g)
            if r.dtype.kind != "f":
                continue
            if index not in accumulators:
                axis = -1 if r.ndim >= 1 and r.shape[-1] > 1 else None
                accumulators[index] = FidelityAccumulator(class_axis=axis)
            accumulators[index].update(r, g)
    results = [acc.result() for acc in accumulators.values()]
    if not results:
        return {"cosine": 1.0, "sqnr_db": math.inf, "disagreement_pct": 0.0}
    agreement = [r["top1_agreement"] for r in results if "top1_agreement" in r]
    return {
        "cosine": min(r["cosine"] for r in results),
        "sqnr_db": min(r["sqnr_db"] for r in results),
        "disagreement_pct": 100.0 * (1.0 - min(agreement)) if agreement else 0.0,
    }


# ---------------------------------------------------------------------------- sensitivity
@dataclasses.dataclass
class LayerStats:
    """What the shadow copy of one quantized layer measured against the float layer."""

    op_type: str
    sqnr_db: float
    #: Per-output-channel ``E[float] - E[quantized]`` of the layer's own output (pre-activation).
    mean_error: np.ndarray | None


@dataclasses.dataclass
class _Shadow:
    op_type: str
    reference: str  # float output (after an absorbed activation)
    shadow: str  # shadow output, quantized like the planned output
    reference_raw: str  # float output of the op itself
    shadow_raw: str  # shadow output of the op itself (before activation and Q)
    axis: int


def _weight_array(value: ir.Value | None) -> np.ndarray:
    tensor = ir.convenience.get_const_tensor(value) if value is not None else None
    assert tensor is not None
    return tensor.numpy()


def _shadow_model(builder: Int8Builder, plan: QuantPlan) -> tuple[ir.Model, dict[str, _Shadow]]:
    """The float model plus a quantized shadow of every planned layer, fed by float inputs."""
    model = builder.float_model.clone()
    params = resolve_tensor_params(model, plan, builder.ranges)
    writer = QdqWriter(model, plan)
    shadows: dict[str, _Shadow] = {}
    added: list[ir.Node] = []

    def qdq(value: ir.Value, key: str, grid: Any) -> ir.Value:
        q = writer.qdq_node("QuantizeLinear", value, key, grid)
        dq = writer.qdq_node("DequantizeLinear", q.outputs[0], key, grid)
        added.extend([q, dq])
        return dq.outputs[0]

    for node_plan in plan.nodes.values():
        if node_plan.rule.role != "linear":
            continue
        node = writer.by_name[node_plan.name]
        inputs: list[ir.Value | None] = list(node.inputs)
        for slot in node_plan.inputs:
            value = node.inputs[slot]
            assert value is not None and value.name
            inputs[slot] = qdq(value, f"shadow_{value.name}", params[value.name])
        if node_plan.weight_input is not None:
            quantized = builder.weights.get(node_plan.name) or quantize_weight(
                _weight_array(node.inputs[node_plan.weight_input]),
                builder.rules,
                node_plan.weight_axis,
            )
            stored = writer.initializer(f"shadow_{node_plan.name}_w", quantized.values)
            dq = writer.qdq_node(
                "DequantizeLinear", stored, f"shadow_{node_plan.name}_w", quantized.params
            )
            added.append(dq)
            inputs[node_plan.weight_input] = dq.outputs[0]
        twin = ir.Node(
            node.domain,
            node.op_type,
            inputs,
            list(node.attributes.values()),
            name=writer.names(f"shadow_{node_plan.name}"),
        )
        added.append(twin)
        raw = twin.outputs[0]
        raw.name = writer.names(f"shadow_{node_plan.name}_raw")
        result, reference = raw, node.outputs[0]
        if node_plan.absorbed is not None:
            act = writer.by_name[node_plan.absorbed]
            act_twin = ir.Node(
                act.domain,
                act.op_type,
                [raw, *act.inputs[1:]],
                list(act.attributes.values()),
                name=writer.names(f"shadow_{act.name}"),
            )
            added.append(act_twin)
            result, reference = act_twin.outputs[0], act.outputs[0]
        if node_plan.output is not None:
            result = qdq(result, f"shadow_{node_plan.output}", params[node_plan.output])
        result.name = writer.names(f"shadow_{node_plan.name}_out")
        shadows[node_plan.name] = _Shadow(
            node.op_type,
            reference.name or "",
            result.name,
            node.outputs[0].name or "",
            raw.name,
            _output_axis(node),
        )
    model.graph.extend(added)
    model.graph.sort()
    return model, shadows


def _output_axis(node: ir.Node) -> int:
    layout = weight_layout(node)
    return layout.act_out_axis if layout is not None else -1


def _channel_sums(values: np.ndarray, axis: int) -> tuple[np.ndarray, int]:
    array = np.asarray(values, dtype=np.float64)
    moved = np.moveaxis(array, axis % array.ndim, -1)
    rows = moved.reshape(-1, moved.shape[-1])
    return rows.sum(axis=0), rows.shape[0]


def layer_statistics(
    builder: Int8Builder, source: FeedSource, plan: QuantPlan | None = None
) -> dict[str, LayerStats]:
    """Per quantized layer, alone on float inputs: SQNR of its output and its mean error."""
    plan = plan or builder.plan()
    model, shadows = _shadow_model(builder, plan)
    if not shadows:
        return {}
    names = sorted(
        {
            n
            for s in shadows.values()
            for n in (s.reference, s.shadow, s.reference_raw, s.shadow_raw)
        }
    )
    accumulators = {layer: FidelityAccumulator() for layer in shadows}
    sums: dict[str, np.ndarray] = {}
    counts: dict[str, int] = {}
    for batch in iter_activations(model, names, source):
        for layer, shadow in shadows.items():
            accumulators[layer].update(batch[shadow.reference], batch[shadow.shadow])
            difference = (
                np.asarray(batch[shadow.reference_raw], np.float64) - batch[shadow.shadow_raw]
            )
            total, rows = _channel_sums(difference, shadow.axis)
            sums[layer] = sums.get(layer, 0.0) + total
            counts[layer] = counts.get(layer, 0) + rows
    return {
        layer: LayerStats(
            shadow.op_type,
            accumulators[layer].result()["sqnr_db"],
            (sums[layer] / max(counts[layer], 1)).astype(np.float32) if layer in sums else None,
        )
        for layer, shadow in shadows.items()
    }


def layer_sensitivity(builder: Int8Builder, source: FeedSource) -> dict[str, float]:
    """SQNR (dB) of each quantized layer's output against float, the layer quantized alone."""
    return {name: layer.sqnr_db for name, layer in layer_statistics(builder, source).items()}


# ------------------------------------------------------------------------------- fallback
def fallback_search(
    builder: Int8Builder,
    source: FeedSource,
    budget: Budget,
    sensitivity: Mapping[str, float],
    stats: Any,
    details: dict[str, Any],
) -> list[str]:
    """The fewest most-sensitive layers to keep float so that ``budget`` holds.

    ``sensitivity`` is the SQNR of each layer (:func:`layer_sensitivity`); lowest first.
    """
    measured: dict[int, dict[str, float]] = {}

    def check(order: Sequence[str], k: int) -> bool:
        if k not in measured:
            measured[k] = fidelity(builder.float_model, builder.build(order[:k]), source)
            logger.info("fallback of %d layers: %s", k, measured[k])
        return budget.met(measured[k])

    order = sorted(sensitivity, key=lambda layer: (sensitivity[layer], layer))
    details["sensitivity_sqnr_db"] = {k: round(v, 2) for k, v in sorted(sensitivity.items())}
    if check(order, 0):
        details["fidelity"] = measured[0]
        return []
    low, high = 0, 1
    while high < len(order) and not check(order, high):
        low, high = high, min(2 * high, len(order))
    if high >= len(order) and not check(order, len(order)):
        # every layer float and still out of budget: only non-linear nodes are left quantized
        high = len(order)
    while high - low > 1:
        middle = (low + high) // 2
        if check(order, middle):
            high = middle
        else:
            low = middle
    details["fidelity"] = measured[high]
    stats["fallback_evaluations"] = len(measured)
    logger.info("quantize: %d most sensitive layers kept float to meet %s", high, budget)
    return list(order[:high])
