"""Remove what no graph output depends on: nodes, initializers, functions, opset imports.

    graph (x) => (y) { t = Exp(x); y = Relu(x) }             -> { y = Relu(x) }
    <float[64] unused_w = ...>                                -> (dropped)
    y, mask = Dropout(x)   (mask unused)                      -> y = Dropout(x)
    opset_import ["" : 17, "com.example" : 1] (no node uses it) -> ["" : 17]
    local function never called                               -> (dropped)

Wraps onnx-ir's ``RemoveUnusedNodesPass`` (main graph, If/Loop/Scan bodies and functions; it
also trims unused optional outputs), ``RemoveUnusedFunctionsPass`` and
``RemoveUnusedOpsetsPass``, and additionally drops unused initializers of subgraphs (onnx-ir
only cleans the main graph's). Never removed: graph inputs and outputs (the model's
signature), initializers that are graph inputs, nodes with an output that is a graph output.
"""

from __future__ import annotations

import logging

import onnx_ir as ir
from onnx_ir.passes.common import (
    RemoveUnusedFunctionsPass,
    RemoveUnusedNodesPass,
    RemoveUnusedOpsetsPass,
)

from irpass.pass_base import IrpassPass
from irpass.registry import register

from ._common import count_nodes

__all__ = ["EliminateDeadPass"]

logger = logging.getLogger(__name__)


def _named_outputs(model: ir.Model) -> int:
    """Node outputs that carry a name; an unused optional output trimmed to "" loses it."""
    graphs: list[ir.Graph | ir.Function] = [model.graph, *model.functions.values()]
    return sum(
        1
        for graph in graphs
        for node in ir.traversal.RecursiveGraphIterator(graph)
        for output in node.outputs
        if output.name
    )


def _remove_unused_subgraph_initializers(model: ir.Model) -> int:
    removed = 0
    for graph in model.graphs():
        if graph is model.graph:
            continue
        keep = set(graph.inputs) | set(graph.outputs)
        for name, value in list(graph.initializers.items()):
            if not value.uses() and value not in keep:
                del graph.initializers[name]
                removed += 1
    return removed


@register
class EliminateDeadPass(IrpassPass):
    """Remove unused nodes, initializers, functions and opset imports (in subgraphs too)."""

    name = "eliminate_dead"
    lossless = True
    recurses_into_subgraphs = True

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        """Dead-code elimination that keeps the model's signature."""
        nodes = count_nodes(model)
        initializers = sum(len(g.initializers) for g in model.graphs())
        functions = len(model.functions)
        opsets = len(model.opset_imports)
        named = _named_outputs(model)
        modified = RemoveUnusedNodesPass()(model).modified
        # onnx-ir trims unused optional outputs inside If/Loop bodies without reporting it
        trimmed = named - _named_outputs(model)
        if trimmed > 0:
            self.stats["optional_outputs_trimmed"] += trimmed
            modified = True
        removed_sub = _remove_unused_subgraph_initializers(model)
        modified = RemoveUnusedFunctionsPass()(model).modified or modified
        modified = RemoveUnusedOpsetsPass()(model).modified or modified
        modified = modified or removed_sub > 0
        for key, count in (
            ("nodes", nodes - count_nodes(model)),
            ("initializers", initializers - sum(len(g.initializers) for g in model.graphs())),
            ("functions", functions - len(model.functions)),
            ("opset_imports", opsets - len(model.opset_imports)),
        ):
            if count > 0:
                self.stats[f"{key}_removed"] += count
        return ir.passes.PassResult(model, modified=modified)
