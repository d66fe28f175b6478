"""Merge a Concat that feeds only another Concat on the same axis into it.

    a = Concat<axis=1>(x, y); b = Concat<axis=1>(a, z)   -> b = Concat<axis=1>(x, y, z)
    a = Concat<axis=-3>(x, y); b = Concat<axis=1>(a, z)  -> merged when both are axis 1 of 4-D

Concatenation is associative along one axis, so the inner Concat's inputs can take its place
in the outer one. torch.onnx emits such chains for ``torch.cat([torch.cat([a, b]), c])``
(U-Net skip connections). Left alone: inner Concats with another consumer or that are graph
outputs (the value must stay), different axes, negative axes whose rank is unknown, and
custom-domain nodes. Works in If/Loop/Scan bodies.
"""

from __future__ import annotations

import logging

import onnx_ir as ir

from irpass.pass_base import IrpassPass
from irpass.registry import register

from ._common import is_onnx_domain

__all__ = ["MergeConcatsPass"]

logger = logging.getLogger(__name__)


def _axis(node: ir.Node) -> int | None:
    """The Concat's axis, normalized to >= 0 when it is negative and the rank is known."""
    axis = node.attributes.get_int("axis", 0)
    if axis >= 0:
        return axis
    for value in (node.outputs[0], *node.inputs):  # all have the same rank
        if value is not None and value.shape is not None:
            return axis + len(value.shape)
    return None


def _mergeable_input(outer: ir.Node, value: ir.Value | None) -> ir.Node | None:
    if value is None or value.is_graph_output():
        return None
    inner = value.producer()
    if inner is None or inner.op_type != "Concat" or not is_onnx_domain(inner.domain):
        return None
    if inner.graph is not outer.graph or len(value.uses()) != 1:
        return None
    axis = _axis(outer)
    if axis is None or axis != _axis(inner):
        return None
    return inner


@register
class MergeConcatsPass(IrpassPass):
    """Fold single-use Concats into the Concat on the same axis that consumes them."""

    name = "merge_concats"
    lossless = True
    recurses_into_subgraphs = True

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        """Merge nested Concats until none is left (inner ones first are handled in order)."""
        merged = 0
        for graph in list(model.graphs()):
            for node in list(graph):
                if node.op_type != "Concat" or not is_onnx_domain(node.domain):
                    continue
                if node.graph is None:
                    continue
                inputs: list[ir.Value | None] = []
                absorbed: list[ir.Node] = []
                for value in node.inputs:
                    inner = _mergeable_input(node, value)
                    if inner is None:
                        inputs.append(value)
                    else:
                        inputs.extend(inner.inputs)
                        absorbed.append(inner)
                if not absorbed:
                    continue
                replacement = ir.node(
                    "Concat",
                    inputs=inputs,
                    attributes={"axis": node.attributes.get_int("axis", 0)},
                    name=node.name,
                )
                out, old = replacement.outputs[0], node.outputs[0]
                out.type, out.shape = old.type, old.shape
                graph.insert_before(node, replacement)
                name = old.name
                old.replace_all_uses_with(out, replace_graph_outputs=True)
                graph.remove(node, safe=True)
                out.name = name
                graph.remove(absorbed, safe=True)
                merged += len(absorbed)
        if merged:
            self.stats["concats_merged"] += merged
        return ir.passes.PassResult(model, modified=merged > 0)
