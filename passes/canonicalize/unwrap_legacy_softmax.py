"""Remove the version converter's wrapper around pre-opset-13 Softmax where it is exact.

Softmax, LogSoftmax and Hardmax changed meaning at opset 13 (from "coerce to 2-D at ``axis``"
to "along ``axis``"); ``upgrade_opset`` (ONNX's converter) keeps the old meaning with a
wrapper. Where both meanings coincide, every dimension after ``axis`` statically 1 or ``axis``
the last one, the wrapper is one op::

    s = Shape(x); f = Flatten<axis=k>(x); y = Reshape(Softmax<axis=-1>(f), s)
    -> y = Softmax<axis=k>(x)

The rank and trailing dimensions come from the shapes already on the graph: run
``infer_shapes`` first (the ``canonicalize`` preset does). Left alone: a wrapper whose input
shape is unknown, a trailing dimension that is not statically 1 (the 2-D coercion then really
mixes axes), a Flatten or Softmax output with other consumers, a Shape with start/end.
Recurses into If/Loop/Scan bodies.
"""

from __future__ import annotations

import dataclasses
import logging

import onnx_ir as ir

from irpass.pass_base import IrpassPass
from irpass.registry import register

from ._common import is_onnx_domain

__all__ = ["UnwrapLegacySoftmaxPass"]

logger = logging.getLogger(__name__)

_SOFTMAX_OPS = frozenset({"Softmax", "LogSoftmax", "Hardmax"})


@dataclasses.dataclass(frozen=True)
class _Wrapper:
    flatten: ir.Node
    softmax: ir.Node
    reshape: ir.Node
    shape: ir.Node
    axis: int


def _match(node: ir.Node) -> _Wrapper | str:
    """Match Reshape(Softmax(Flatten(x, k), -1), Shape(x)) at ``node`` or say why not."""
    x_flat = node.inputs[0] if node.inputs else None
    flatten = x_flat.producer() if x_flat is not None else None
    if flatten is None or flatten.op_type != "Flatten" or not is_onnx_domain(flatten.domain):
        return "its input is not a Flatten"
    if node.attributes.get_int("axis", -1) not in (-1, 1):
        return "it does not run along the flattened axis"
    uses = node.outputs[0].uses()
    if len(uses) != 1 or node.outputs[0].is_graph_output():
        return "its output has other consumers"
    reshape = next(iter(uses)).node
    if reshape.op_type != "Reshape" or len(reshape.inputs) < 2 or reshape.inputs[1] is None:
        return "its consumer is not a Reshape"
    shape = reshape.inputs[1].producer()
    x = flatten.inputs[0]
    if shape is None or shape.op_type != "Shape" or shape.inputs[0] is not x:
        return "the Reshape target is not Shape(x)"
    if shape.attributes.get("start") is not None or shape.attributes.get("end") is not None:
        return "the Shape has start/end"
    if x is None or x.shape is None:
        return "the input shape is unknown (run infer_shapes first)"
    rank = len(x.shape)
    k = flatten.attributes.get_int("axis", 1)
    k = k + rank if k < 0 else k
    if not 0 <= k < rank:
        return f"Flatten axis {k} is out of range for rank {rank}"
    if k != rank - 1 and any(d != 1 for d in list(x.shape)[k + 1 :]):
        return f"dimensions after axis {k} are not all 1 ({x.shape}): the 2-D coercion mixes them"
    return _Wrapper(flatten, node, reshape, shape, k)


def _unwrap(wrapper: _Wrapper) -> None:
    node, reshape = wrapper.softmax, wrapper.reshape
    graph = node.graph
    assert graph is not None
    x = wrapper.flatten.inputs[0]
    assert x is not None
    replacement = ir.node(
        node.op_type, inputs=[x], attributes={"axis": wrapper.axis}, name=node.name
    )
    out, old = replacement.outputs[0], reshape.outputs[0]
    out.type = old.type
    out.shape = x.shape
    graph.insert_before(reshape, replacement)
    name = old.name
    old.replace_all_uses_with(out, replace_graph_outputs=True)
    graph.remove([reshape, node], safe=True)
    out.name = name
    # The wrapper's Flatten and Shape are dead now unless something else reads them.
    for leftover in (wrapper.flatten, wrapper.shape):
        if not leftover.outputs[0].uses() and not leftover.outputs[0].is_graph_output():
            graph.remove(leftover, safe=True)


@register
class UnwrapLegacySoftmaxPass(IrpassPass):
    """Flatten/Softmax/Reshape (the converter's pre-13 Softmax) -> Softmax where exact."""

    name = "unwrap_legacy_softmax"
    lossless = True
    recurses_into_subgraphs = True

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        """Rewrite every exact wrapper in every graph."""
        count = 0
        for graph in list(model.graphs()):
            for node in list(graph):
                if node.op_type not in _SOFTMAX_OPS or not is_onnx_domain(node.domain):
                    continue
                match = _match(node)
                if isinstance(match, str):
                    logger.debug("keeping %s %s: %s", node.op_type, node.name, match)
                    continue
                _unwrap(match)
                count += 1
        if count:
            self.stats["softmax_wrappers_removed"] += count
        return ir.passes.PassResult(model, modified=count > 0)
