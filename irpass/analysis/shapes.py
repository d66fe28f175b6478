"""Shape analysis that leaves the model untouched.

:func:`inferred_values` runs ONNX shape inference (with data propagation) on a protobuf built
without the weights above 1 KB (onnx-ir's ``call_onnx_api``, the helper behind its
``ShapeInferencePass``, which restores the model afterwards), then reads back only the inferred
value infos, never the nodes or weights. It works on > 2 GB models and costs a fraction of a
clone plus a full deserialization.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import TypeVar

import onnx
import onnx_ir as ir

# Private to onnx-ir, used on purpose: call_onnx_api (what its public ShapeInferencePass runs
# on) infers on a proto without the large weights and restores the model; the public pass would
# write the inferred shapes into the model, which an analysis must not touch, and a clone first
# would cost what this module exists to avoid.
from onnx_ir.passes.common import _c_api_utils

from irpass.ir import graph_protos

__all__ = [
    "ValueInfo",
    "call_without_weights",
    "infer_shapes_proto",
    "inferred_values",
    "static_numel",
]

logger = logging.getLogger(__name__)

ValueInfo = tuple["ir.Shape | None", "ir.DataType | None"]
_R = TypeVar("_R")


def _known(
    shape: ir.Shape | None, dtype: ir.DataType | None, out: dict[str, ValueInfo], name: str
) -> None:
    previous = out.get(name)
    if previous is None or (previous[0] is None and shape is not None):
        out[name] = (shape, dtype)


def _restore_initializer_order(graph: ir.Graph, order: list[str]) -> None:
    """``call_onnx_api`` re-adds large initializers last; an analysis must not reorder them."""
    if list(graph.initializers) == order:
        return
    values = [graph.initializers[name] for name in order]
    graph.initializers.clear()
    for value in values:
        graph.initializers.add(value)


def call_without_weights(func: Callable[[onnx.ModelProto], _R], model: ir.Model) -> _R:
    """Call ``func`` on a proto of ``model`` whose weights above 1 KB are typed inputs instead.

    The model is left exactly as it was (onnx-ir's helper removes and re-adds the large
    initializers; their order and annotations are restored here). Serializing without the
    weights costs a fraction of a full serialization and works on > 2 GB models.
    """
    order = list(model.graph.initializers)
    # the helper annotates initializers that have no shape or type; an analysis must not
    annotations = [(v, v.shape, v.type) for v in model.graph.initializers.values()]
    try:
        return _c_api_utils.call_onnx_api(func, model)
    finally:
        _restore_initializer_order(model.graph, order)
        for value, shape, type_ in annotations:
            if value.shape is not shape:
                value.shape = shape
            if value.type is not type_:
                value.type = type_


def infer_shapes_proto(
    model: ir.Model, *, strict: bool = False, data_prop: bool = True
) -> onnx.ModelProto:
    """ONNX shape inference on ``model`` without its weights above 1 KB; returns the proto.

    The model is left exactly as it was (:func:`call_without_weights`). Raises whatever ONNX
    shape inference raises.
    """
    infer = functools.partial(
        onnx.shape_inference.infer_shapes, check_type=False, strict_mode=strict, data_prop=data_prop
    )
    return call_without_weights(infer, model)


def inferred_values(model: ir.Model) -> dict[str, ValueInfo]:
    """Map value names (main graph and subgraphs) to their (shape, dtype), inferred if absent."""
    out: dict[str, ValueInfo] = {}
    complete = True
    for graph in model.graphs():
        values = list(graph.inputs) + list(graph.initializers.values())
        values += [v for node in graph for v in node.outputs]
        for value in values:
            if value.name and value.shape is not None:
                out[value.name] = (value.shape, value.dtype)
            else:
                complete = False
    if complete:  # every value is annotated already (e.g. right after infer_shapes)
        return out
    try:
        proto = infer_shapes_proto(model)
    except Exception as exc:  # shape inference is best-effort: report what is known
        logger.debug("shape inference failed: %s", exc)
        return out
    for graph_proto in graph_protos(proto.graph):
        for info in list(graph_proto.value_info) + list(graph_proto.output):
            # a value with a known shape keeps it (see _known): parsing its inferred type
            # again would cost most of this function on large graphs
            known = out.get(info.name)
            if (known is not None and known[0] is not None) or not info.type.WhichOneof("value"):
                continue
            shape = ir.serde.deserialize_type_proto_for_shape(info.type)
            type_ = ir.serde.deserialize_type_proto_for_type(info.type)
            dtype = type_.dtype if type_ is not None else None
            _known(shape, dtype, out, info.name)
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
