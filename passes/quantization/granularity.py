"""One weight scale instead of one per channel for depthwise Convs, where it costs nothing.

A depthwise 3x3 Conv stores 9 int8 weights per channel, and a per-channel grid adds a float32
weight scale and, with an int32 bias, a float32 bias scale (``s_in * s_w[c]``) per channel:
8 bytes of parameters for 9 bytes of weights. Where the channels' weight ranges are alike, one
scale per layer quantizes them as well::

    DQ(Wq[C,1,3,3], s_w[C], axis=0), DQ(bq[C], s_in * s_w[C])       (C + C floats)
        ->  DQ(Wq[C,1,3,3], s_w), DQ(bq[C], s_in * s_w)             (2 floats)

Which layers: the depthwise Convs of the plan, cheapest first (highest SQNR of the per-tensor
weight against the float weight). The whole quantized model is measured on calibration data
(:func:`.recover.fidelity`) with all per-channel grids and with per-tensor grids on a prefix of
that order; the longest prefix whose output SQNR is within ``tolerance_db`` of the per-channel
model's and whose top-1 disagreement with float is not higher is kept (binary search over the
prefix length, a few model runs). Models without depthwise Convs are not measured at all.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx_ir as ir

from irpass.context import FeedSource

from . import recover
from .qparams import quantize, weight_params

if TYPE_CHECKING:
    from .int8 import Int8Builder

__all__ = ["depthwise_candidates", "per_tensor_depthwise"]

logger = logging.getLogger(__name__)

#: Output SQNR (dB) per-tensor depthwise grids may lose against per-channel ones: ``nil``.
TOLERANCE_DB = 0.5


def _sqnr_db(reference: np.ndarray, approximation: np.ndarray) -> float:
    noise = float(np.sum((reference.astype(np.float64) - approximation) ** 2))
    signal = float(np.sum(reference.astype(np.float64) ** 2))
    return float("inf") if noise == 0.0 else 10.0 * np.log10(max(signal, 1e-30) / noise)


def depthwise_candidates(builder: Int8Builder) -> list[tuple[str, float]]:
    """Planned depthwise Convs with per-channel weights, and their per-tensor weight SQNR (dB).

    Highest SQNR (least cost) first.
    """
    nodes = {node.name: node for node in builder.float_model.graph}
    found: list[tuple[str, float]] = []
    for plan in builder.plan().linear():
        node = nodes[plan.name]
        if plan.op_type != "Conv" or plan.weight_axis is None or plan.weight_input is None:
            continue
        tensor = ir.convenience.get_const_tensor(node.inputs[plan.weight_input])  # type: ignore[arg-type]
        if tensor is None:
            continue
        weight = tensor.numpy()
        group = node.attributes.get("group")
        groups = int(group.value) if group is not None else 1
        if weight.ndim < 3 or weight.shape[0] < 2 or weight.shape[1] != 1:
            continue
        if groups != weight.shape[0]:
            continue
        params = weight_params(weight, builder.rules.weights, None)
        dequantized = quantize(weight, params).astype(np.float64) * float(params.scale)
        found.append((plan.name, _sqnr_db(weight, dequantized)))
    return sorted(found, key=lambda item: (-item[1], item[0]))


def per_tensor_depthwise(
    builder: Int8Builder,
    source: FeedSource,
    stats: Any,
    details: dict[str, Any],
    tolerance_db: float = TOLERANCE_DB,
) -> frozenset[str]:
    """The depthwise Convs whose weights can take one scale at no measurable cost.

    ``builder.per_tensor`` is left as it was; the caller sets it to the result.
    """
    candidates = depthwise_candidates(builder)
    if not candidates:
        return frozenset()
    order = [name for name, _ in candidates]
    original = builder.per_tensor
    measured: dict[int, dict[str, float]] = {}

    def measure(count: int) -> dict[str, float]:
        if count not in measured:
            builder.per_tensor = original | frozenset(order[:count])
            try:
                measured[count] = recover.fidelity(builder.float_model, builder.build(), source)
            finally:
                builder.per_tensor = original
        return measured[count]

    reference = measure(0)

    def acceptable(count: int) -> bool:
        metrics = measure(count)
        return (
            metrics["sqnr_db"] >= reference["sqnr_db"] - tolerance_db
            and metrics["disagreement_pct"] <= reference["disagreement_pct"]
        )

    chosen = _longest_prefix(len(order), acceptable)
    details["depthwise_per_tensor"] = {
        "weight_sqnr_db": {name: round(value, 2) for name, value in candidates},
        "output_sqnr_db": {str(k): round(v["sqnr_db"], 2) for k, v in sorted(measured.items())},
        "chosen": sorted(order[:chosen]),
    }
    stats["per_tensor_depthwise"] = chosen
    logger.info("quantize: %d of %d depthwise Convs take per-tensor weights", chosen, len(order))
    return frozenset(order[:chosen])


def _longest_prefix(total: int, acceptable: Callable[[int], bool]) -> int:
    """The largest ``k <= total`` with ``acceptable(k)``, assuming it holds up to some k."""
    if acceptable(total):
        return total
    low, high = 0, total  # acceptable(low) holds (0 is the reference), acceptable(high) fails
    while high - low > 1:
        middle = (low + high) // 2
        if acceptable(middle):
            low = middle
        else:
            high = middle
    return low
