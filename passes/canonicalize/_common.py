"""Helpers shared by the canonicalization passes (not part of the public surface)."""

from __future__ import annotations

import onnx_ir as ir

__all__ = ["WEIGHT_SLOTS", "count_nodes", "is_onnx_domain"]

#: Inputs that hold learned parameters, by (op_type): input indices. A constant subgraph that
#: feeds one of these slots computes a weight; constant folding always materializes it so that
#: later passes (fusion, pruning, quantization) see an initializer.
WEIGHT_SLOTS: dict[str, frozenset[int]] = {
    "Conv": frozenset({1, 2}),
    "ConvTranspose": frozenset({1, 2}),
    "ConvInteger": frozenset({1, 3}),
    "QLinearConv": frozenset({3, 4, 5, 8}),
    "Gemm": frozenset({1, 2}),
    "MatMul": frozenset({0, 1}),
    "MatMulInteger": frozenset({1, 3}),
    "QLinearMatMul": frozenset({3, 4, 5}),
    "BatchNormalization": frozenset({1, 2, 3, 4}),
    "InstanceNormalization": frozenset({1, 2}),
    "LayerNormalization": frozenset({1, 2}),
    "GroupNormalization": frozenset({1, 2}),
    "RMSNormalization": frozenset({1}),
    "PRelu": frozenset({1}),
    "LSTM": frozenset({1, 2, 3, 6, 7}),
    "GRU": frozenset({1, 2, 3, 5}),
    "RNN": frozenset({1, 2, 3, 5}),
    "Gather": frozenset({0}),
    "DequantizeLinear": frozenset({0, 1, 2}),
    "QuantizeLinear": frozenset({1, 2}),
}


def is_onnx_domain(domain: str) -> bool:
    """Whether ``domain`` names the default ONNX operator set."""
    return domain in ("", "ai.onnx")


def count_nodes(model: ir.Model) -> int:
    """Number of nodes in the main graph and every subgraph."""
    return sum(len(graph) for graph in model.graphs())
