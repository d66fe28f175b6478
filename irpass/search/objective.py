"""What a search minimizes: estimated cost on the target, file size, MACs, or measured latency.

``cost`` (the default) is a per-target estimate from the graph alone, so a search is
deterministic and means something for a device that is not this machine: every MAC of a
linear op is weighted by the precision it runs at (a Conv/Gemm/MatMul whose weight comes
through DequantizeLinear, or a MatMulNBits, runs in integer arithmetic; float16 weights run in
half precision), plus the weight bytes the device must read. ``latency`` measures ONNX Runtime
on this machine (interleaved with the baseline, see :mod:`irpass.bench`); it is only the right
objective when this machine is the target.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import onnx_ir as ir

from irpass.analysis.cost import model_cost, node_macs
from irpass.analysis.shapes import ValueInfo, inferred_values

__all__ = ["OBJECTIVES", "PrecisionCosts", "estimated_cost", "precision_costs_for"]

Objective = Literal["cost", "size", "macs", "latency"]
OBJECTIVES: tuple[str, ...] = ("cost", "size", "macs", "latency")

_LINEAR = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul", "MatMulNBits"})


@dataclasses.dataclass(frozen=True)
class PrecisionCosts:
    """Relative cost of one MAC per precision, and of one weight byte read, for a backend."""

    fp32: float = 1.0
    fp16: float = 1.0
    int8: float = 0.35
    int4: float = 0.35
    per_weight_byte: float = 0.05


#: Relative costs per backend family: CPUs gain from int8 (VNNI / dot-product instructions)
#: but not from fp16; GPUs (TensorRT) run fp16 at about twice fp32 and int8 at about four
#: times; NNAPI accelerators are int8 engines.
_BACKEND_COSTS = {
    "onnxruntime": PrecisionCosts(fp16=1.0, int8=0.35, int4=0.35),
    "tensorrt": PrecisionCosts(fp16=0.5, int8=0.25, int4=0.25),
    "nnapi": PrecisionCosts(fp16=0.7, int8=0.3, int4=0.3),
    "coreml": PrecisionCosts(fp16=0.5, int8=0.5, int4=0.5),
}


def precision_costs_for(backend: str | None) -> PrecisionCosts:
    """The relative costs for a backend name (ONNX Runtime CPU when unknown)."""
    return _BACKEND_COSTS.get(backend or "onnxruntime", _BACKEND_COSTS["onnxruntime"])


def _precision(node: ir.Node) -> str:
    if node.op_type == "MatMulNBits":
        bits = node.attributes.get("bits")
        return "int4" if bits is None or bits.as_int() <= 4 else "int8"
    for value in node.inputs[:2]:
        producer = value.producer() if value is not None else None
        if producer is not None and producer.op_type == "DequantizeLinear":
            return "int8"
        if value is not None and value.dtype == ir.DataType.FLOAT16:
            return "fp16"
    return "fp32"


def estimated_cost(model: ir.Model, costs: PrecisionCosts) -> float:
    """Relative run time: MACs weighted by the precision of each linear op, plus weight bytes.

    Units are "fp32 MACs"; only comparisons between models of the same search are meaningful.
    """
    values = inferred_values(model)
    cost = model_cost(model, values)
    total = 0.0
    counted = 0
    for graph in model.graphs():
        for node in graph:
            if node.op_type not in _LINEAR:
                continue
            macs = _matmul_nbits_macs(node, values) if node.op_type == "MatMulNBits" else (
                node_macs(node, values))
            if not macs:
                continue
            total += macs * getattr(costs, _precision(node))
            counted += macs
    total += max(0, cost.macs - counted)  # non-linear work at fp32 cost
    return total + costs.per_weight_byte * cost.weight_bytes


def _matmul_nbits_macs(node: ir.Node, values: dict[str, ValueInfo]) -> int | None:
    """MatMulNBits(A[..., K], packed B) -> [..., N]: numel(A) * N MACs (symbolic dims as 1)."""
    n_attr = node.attributes.get("N")
    data = node.inputs[0] if node.inputs else None
    if n_attr is None or data is None:
        return None
    shape = values.get(data.name or "", (None, None))[0] or data.shape
    if shape is None:
        return None
    numel = 1
    for dim in shape:
        numel *= dim if isinstance(dim, int) else 1
    return numel * n_attr.as_int()
