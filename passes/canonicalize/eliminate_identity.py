"""Remove Identity nodes and inference-time Dropout.

    y = Identity(x); z = Relu(y)                  -> z = Relu(x)
    y = Dropout <ratio=0.5> (x); z = Relu(y)      -> z = Relu(x)
    y = Dropout(x, ratio, training_mode=false)    -> x
    graph output y = Identity(x)  (x internal)    -> x renamed to y, node removed

Dropout is the identity at inference (ONNX: unless ``training_mode`` is true; opset < 7
``is_test=0`` also meant training, irpass requires opset >= 7). Left alone:

- a Dropout whose ``mask`` output is used (the mask would have to be materialized);
- a Dropout whose ``training_mode`` input is not a constant false;
- ``y = Identity(x)`` where y is a graph output and x a graph input (the node *is* the graph);
- arithmetic no-ops (``x*1``, ``x+0``, no-op ``Cast``): those belong to the fusion family.

Dropouts of the main graph and of If/Loop/Scan bodies are first rewritten to Identity nodes;
onnx-ir's ``IdentityEliminationPass`` then removes the Identity nodes of the main graph, of
If/Loop/Scan bodies and of model-local functions (Dropouts inside functions are left alone).
"""

from __future__ import annotations

import logging

import numpy as np
import onnx_ir as ir
from onnx_ir.passes.common import IdentityEliminationPass

from irpass.pass_base import IrpassPass, all_graphs
from irpass.registry import register

from ._common import count_nodes, is_onnx_domain

__all__ = ["EliminateIdentityPass"]

logger = logging.getLogger(__name__)


def _dropout_refusal(node: ir.Node) -> str | None:
    """Why this Dropout cannot become an Identity (None when it can)."""
    if len(node.outputs) > 1 and (node.outputs[1].uses() or node.outputs[1].is_graph_output()):
        return "its mask output is used"
    if len(node.inputs) > 2 and node.inputs[2] is not None:
        training = node.inputs[2].const_value
        if training is None:
            return "training_mode is not a constant"
        if bool(np.asarray(training.numpy()).any()):
            return "training_mode is true"
    return None


def _dropouts_to_identity(graph: ir.Graph, stats: dict[str, int]) -> int:
    count = 0
    for node in list(graph):
        if node.op_type != "Dropout" or not is_onnx_domain(node.domain):
            continue
        refusal = _dropout_refusal(node)
        if refusal is not None:
            logger.debug("keeping Dropout %s: %s", node.name, refusal)
            stats["dropout_kept"] += 1
            continue
        output = node.outputs[0]
        identity = ir.node("Identity", inputs=[node.inputs[0]], name=node.name)
        new_value = identity.outputs[0]
        new_value.type = output.type
        new_value.shape = output.shape
        graph.insert_before(node, identity)
        name = output.name
        output.replace_all_uses_with(new_value, replace_graph_outputs=True)
        graph.remove(node, safe=True)
        new_value.name = name
        count += 1
    return count


@register
class EliminateIdentityPass(IrpassPass):
    """Remove Identity nodes and inference-mode Dropout (subgraphs and functions included)."""

    name = "eliminate_identity"
    lossless = True
    recurses_into_subgraphs = True

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        """Turn removable Dropouts into Identity, then eliminate Identity nodes."""
        dropouts = 0
        for graph in list(all_graphs(model)):
            dropouts += _dropouts_to_identity(graph, self.stats)
        identities = sum(
            1
            for graph in all_graphs(model)
            for node in graph
            if node.op_type == "Identity" and is_onnx_domain(node.domain)
        )
        before = count_nodes(model)
        modified = IdentityEliminationPass()(model).modified or dropouts > 0
        removed = before - count_nodes(model)
        if dropouts:
            self.stats["dropout_removed"] += dropouts
        if removed - dropouts > 0:
            self.stats["identity_removed"] += removed - dropouts
        kept = identities - removed
        if kept > 0:
            self.stats["identity_kept"] += kept
        return ir.passes.PassResult(model, modified=modified)
