"""Remove Identity nodes and inference-time Dropout.

    y = Identity(x); z = Relu(y)                  -> z = Relu(x)
    y = Dropout <ratio=0.5> (x); z = Relu(y)      -> z = Relu(x)
    y = Dropout(x, ratio, training_mode=false)    -> x
    graph output y = Identity(x)  (x internal)    -> x renamed to y, node removed

Dropout is the identity at inference (ONNX: unless ``training_mode`` is true; opset < 7
``is_test=0`` also meant training, irpass requires opset >= 7). Left alone:

- a Dropout whose ``mask`` output is used (the mask would have to be materialized);
- a Dropout whose ``training_mode`` input is not a constant false;
- ``y = Identity(x)`` where y is an output of the node's graph and x is not a value that graph
  computes itself: x is a graph input or initializer (the node *is* the graph), x comes from an
  enclosing graph (renaming it would rename the outer value), or x is another output of the
  same graph. Graph outputs are positional: a Scan/Loop body returning the running sum both as
  its state and as its scan output (``sum_out = Add(..); scan_out = Identity(sum_out)``) needs
  two outputs, and merging them into one value would silently drop one of them;
- arithmetic no-ops (``x*1``, ``x+0``, no-op ``Cast``): those belong to the fusion family.

Dropouts of the main graph and of If/Loop/Scan bodies are first rewritten to Identity nodes;
then the Identity nodes of every graph and model-local function are removed (Dropouts inside
functions are left alone). onnx-ir's ``IdentityEliminationPass`` is not used: it turns
``scan_out = Identity(sum_out)`` with both as body outputs into one value listed twice, which
changes what the Scan computes (ONNX backend case ``test_scan9_sum``).
"""

from __future__ import annotations

import logging

import numpy as np
import onnx_ir as ir

from irpass.pass_base import IrpassPass
from irpass.registry import register

from ._common import is_onnx_domain

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


def _dropouts_to_identity(graph: ir.Graph, stats: dict[str, int]) -> set[ir.Node]:
    """Rewrite removable Dropouts to Identity nodes; return those nodes."""
    created: set[ir.Node] = set()
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
        created.add(identity)
    return created


def _identity_refusal(node: ir.Node) -> str | None:
    """Why ``y = Identity(x)`` must stay (None when it can go); see the module docstring."""
    if len(node.inputs) != 1 or len(node.outputs) != 1 or node.inputs[0] is None:
        return "not a one-input, one-output Identity"
    source, output = node.inputs[0], node.outputs[0]
    if not output.is_graph_output():
        return None
    producer = source.producer()
    if producer is None or producer.graph is not node.graph:
        return "it copies a graph input, an initializer or an outer-scope value to an output"
    if source.is_graph_output():
        return "its input is another output of the same graph"
    return None


def _remove_identity(node: ir.Node) -> None:
    source, output = node.inputs[0], node.outputs[0]
    assert source is not None and node.graph is not None
    if source.type is None:
        source.type = output.type
    if source.shape is None:
        source.shape = output.shape
    is_output = output.is_graph_output()
    name = output.name
    output.replace_all_uses_with(source, replace_graph_outputs=is_output)
    node.graph.remove(node, safe=True)
    if is_output:
        # The graph's signature keeps its output name; x was internal to this graph.
        source.name = name


def _eliminate_identities(
    graph: ir.Graph | ir.Function, from_dropout: set[ir.Node], stats: dict[str, int]
) -> int:
    removed = 0
    for node in list(graph):
        if node.op_type != "Identity" or not is_onnx_domain(node.domain):
            continue
        refusal = _identity_refusal(node)
        if refusal is not None:
            logger.debug("keeping Identity %s: %s", node.name, refusal)
            stats["dropout_kept" if node in from_dropout else "identity_kept"] += 1
            continue
        _remove_identity(node)
        stats["dropout_removed" if node in from_dropout else "identity_removed"] += 1
        removed += 1
    return removed


@register
class EliminateIdentityPass(IrpassPass):
    """Remove Identity nodes and inference-mode Dropout (subgraphs and functions included)."""

    name = "eliminate_identity"
    lossless = True
    recurses_into_subgraphs = True

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        """Turn removable Dropouts into Identity, then eliminate Identity nodes."""
        from_dropout: set[ir.Node] = set()
        for graph in list(model.graphs()):
            from_dropout |= _dropouts_to_identity(graph, self.stats)
        graphs: list[ir.Graph | ir.Function] = [*model.graphs(), *model.functions.values()]
        removed = sum(_eliminate_identities(g, from_dropout, self.stats) for g in graphs)
        # A Dropout that became an Identity and stays one is still a change to the model.
        return ir.passes.PassResult(model, modified=removed > 0 or bool(from_dropout))
