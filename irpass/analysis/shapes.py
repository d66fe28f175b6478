"""Shape analysis that leaves the model untouched.

:func:`inferred_values` runs ONNX shape inference on a shallow clone (tensors are shared, not
copied; large weights are kept out of the protobuf by onnx-ir's ShapeInferencePass) and returns
name -> (shape, dtype) for every value it could type.
"""

from __future__ import annotations

import logging

import onnx_ir as ir
import onnx_ir.passes.common as common_passes

__all__ = ["ValueInfo", "inferred_values", "static_numel"]

logger = logging.getLogger(__name__)

ValueInfo = tuple["ir.Shape | None", "ir.DataType | None"]


def inferred_values(model: ir.Model) -> dict[str, ValueInfo]:
    """Map value names (main graph and subgraphs) to their inferred (shape, dtype)."""
    clone = model.clone()
    try:
        common_passes.ShapeInferencePass(strict_mode=False)(clone)
    except Exception as exc:  # shape inference is best-effort: report what is known
        logger.debug("shape inference failed: %s", exc)
    out: dict[str, ValueInfo] = {}
    for graph in clone.graphs():
        for value in list(graph.inputs) + list(graph.initializers.values()):
            if value.name:
                out[value.name] = (value.shape, value.dtype)
        for node in graph:
            for value in node.outputs:
                if value.name:
                    out[value.name] = (value.shape, value.dtype)
    return out


def static_numel(shape: ir.Shape | None) -> int | None:
    """Number of elements of a fully static shape, else None."""
    if shape is None:
        return None
    total = 1
    for dim in shape:
        if not isinstance(dim, int):
            return None
        total *= dim
    return total
