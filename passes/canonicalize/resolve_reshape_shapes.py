"""Give a Reshape a constant target shape when shape inference knows it up to one dimension.

    n = Slice(Cast(Shape(x)), [0], [1])                         x: float[N, 131072]
    y = Reshape(x, Cast(Concat(n, [512], [256])))               y: float[N, 512, 256]
    -> y = Reshape(x, int64 {-1, 512, 256})      (Shape/Slice/Concat/Cast become dead)

Exporters (tf2onnx, jax2tf, torch.onnx with dynamic axes) compute target shapes at run time
from ``Shape`` even when only the batch dimension is dynamic. When shape inference (with data
propagation) has derived the Reshape's output shape with at most one unknown dimension, the
shape is a constant: static dims as they are and ``-1`` for the unknown one. The shape
computation then has no other consumer and ``eliminate_dead`` removes it.

``allowzero`` does not matter: the constant never contains a 0. Left alone: Reshapes whose
shape input already is a constant, outputs with unknown rank, more than one unknown
dimension, a static dimension of 0 (``-1`` cannot be inferred next to a zero), an input of
unknown shape, annotations that contradict the input (different static element counts
when both are static or share their one symbolic dim), and annotations whose rank differs from
the length of the shape tensor (a wrong declaration, typically of a graph output: the shape
tensor decides the rank, the annotation does not). The main graph's declared output shapes
are used only when the shape tensor's inferred length confirms their rank.
Relies on the shapes ``infer_shapes`` annotated; run it first. Works in If/Loop/Scan bodies too
(the new shape is a Constant node there, an initializer in the main graph).
"""

from __future__ import annotations

import logging
import math

import numpy as np
import onnx_ir as ir

from irpass.pass_base import IrpassPass
from irpass.registry import register

from ._common import is_onnx_domain

__all__ = ["ResolveReshapeShapesPass"]

logger = logging.getLogger(__name__)


def _constant_shape(node: ir.Node, declared: frozenset[ir.Value]) -> np.ndarray | None:
    """The constant target shape for this Reshape, or None when it must stay dynamic."""
    if node.op_type != "Reshape" or not is_onnx_domain(node.domain) or len(node.inputs) < 2:
        return None
    shape_input = node.inputs[1]
    if shape_input is None or shape_input.const_value is not None:
        return None
    out_shape = node.outputs[0].shape
    if out_shape is None:
        return None
    dims: list[int] = []
    unknown = 0
    for dim in out_shape:
        if isinstance(dim, int):
            if dim <= 0:
                return None
            dims.append(dim)
        else:
            unknown += 1
            dims.append(-1)
    if unknown > 1 or not _consistent(node.inputs[0], out_shape):
        return None
    length = shape_input.shape
    if length is not None and len(length) == 1 and isinstance(length[0], int):
        if length[0] != len(dims):
            return None  # the shape tensor decides the rank; the annotation is wrong
    elif node.outputs[0] in declared:
        return None  # a graph output's annotation is a declaration: unconfirmed, not trusted
    return np.array(dims, dtype=np.int64)


def _consistent(data: ir.Value | None, out_shape: ir.Shape) -> bool:
    """Whether the annotated output shape can be trusted against the input's shape.

    Annotations may come from the exporter rather than from inference; a Reshape preserves the
    number of elements, so static element counts (and the symbolic dims) must agree.
    """
    if data is None or data.shape is None:
        return False
    in_dims, out_dims = list(data.shape), list(out_shape)
    in_symbolic = [d for d in in_dims if not isinstance(d, int)]
    out_symbolic = [d for d in out_dims if not isinstance(d, int)]
    in_static = math.prod(d for d in in_dims if isinstance(d, int))
    out_static = math.prod(d for d in out_dims if isinstance(d, int))
    if not in_symbolic:
        return not out_symbolic and in_static == out_static
    if len(out_symbolic) != 1:
        return False
    if len(in_symbolic) == 1 and in_symbolic[0] == out_symbolic[0] and in_symbolic[0].value:
        return in_static == out_static
    return True


@register
class ResolveReshapeShapesPass(IrpassPass):
    """Replace a computed Reshape shape by a constant when inference knows all but one dim."""

    name = "resolve_reshape_shapes"
    lossless = True
    recurses_into_subgraphs = True

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        """Rewrite every Reshape whose target shape is known up to one dimension."""
        count = 0
        declared = frozenset(model.graph.outputs)
        for graph in list(model.graphs()):
            for node in list(graph):
                dims = _constant_shape(node, declared)
                if dims is None:
                    continue
                tensor = ir.tensor(dims, name=f"{node.outputs[0].name}_shape")
                if graph is model.graph:
                    value = ir.Value(
                        name=tensor.name,
                        type=ir.TensorType(ir.DataType.INT64),
                        shape=ir.Shape([len(dims)]),
                        const_value=tensor,
                    )
                    graph.register_initializer(value)
                else:
                    constant = ir.node("Constant", inputs=[], attributes={"value": tensor})
                    graph.insert_before(node, constant)
                    value = constant.outputs[0]
                    value.name = tensor.name
                    value.const_value = tensor
                node.replace_input_with(1, value)
                logger.debug("Reshape %s: target shape resolved to %s", node.name, dims.tolist())
                count += 1
        if count:
            self.stats["reshapes_resolved"] += count
            self.growth_reasons.append("one int64 shape constant per resolved Reshape")
        return ir.passes.PassResult(model, modified=count > 0)
