"""Common-subexpression elimination: compute each identical node once.

    a = Relu(x); b = Relu(x); y = Add(a, b)          -> a = Relu(x); y = Add(a, a)
    c1 = Conv(x, w); c2 = Conv(x, w)   (same attrs)   -> c1 used for both
    k1 = Constant <value=int64 {2}>; k2 = Constant <value=int64 {2}>  -> one Constant

Two nodes are the same when they have the same (domain, op_type, overload), the very same input
values, the same number of outputs and equal attributes (tensor attributes compared by content
up to ``max_tensor_elements``, string tensors element by element, type attributes such as
``Optional``'s by type and shape). Run ``dedup_initializers`` first so that equal weights are the
same value. Processes the main graph, every If/Loop/Scan body and every function, each on its
own (a node in a branch is not merged with one in the parent graph).

Left alone: nodes with graph attributes (If/Loop/Scan themselves), random ops (RandomNormal,
Multinomial, ...: two draws are not one), custom-domain ops (their determinism is unknown),
and tensor attributes larger than ``max_tensor_elements``. When the duplicate's output is a
graph output and the kept value is itself a graph input or output, an Identity keeps both names
(the graph's signature never changes).

onnx-ir has ``CommonSubexpressionEliminationPass`` but it only visits the main graph; this pass
applies the same rule to every graph.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable
from typing import Any

import onnx_ir as ir

from irpass.ir import KNOWN_DOMAINS
from irpass.pass_base import IrpassPass, option
from irpass.registry import register

from ._common import is_onnx_domain

__all__ = ["EliminateCommonSubexpressionsPass"]

logger = logging.getLogger(__name__)

_RANDOM_OPS = frozenset(
    {
        "RandomUniform",
        "RandomNormal",
        "RandomUniformLike",
        "RandomNormalLike",
        "Multinomial",
        "Bernoulli",
        "Dropout",
    }
)
#: Subgraphs and tensor lists are not compared (equal bodies are rare; comparing is costly).
_UNCOMPARED_ATTRIBUTES = frozenset(
    {
        ir.AttributeType.GRAPH,
        ir.AttributeType.GRAPHS,
        ir.AttributeType.TENSORS,
        ir.AttributeType.SPARSE_TENSOR,
        ir.AttributeType.SPARSE_TENSORS,
    }
)


def _tensor_key(tensor: ir.TensorProtocol) -> Any:
    if tensor.dtype == ir.DataType.STRING:
        # String tensors have no fixed-width byte form; their elements are the content.
        data: Any = tuple(tensor.string_data())  # type: ignore[attr-defined]
    else:
        data = tensor.tobytes()
    return (str(tensor.dtype), tuple(tensor.shape), data)


def _type_key(type_and_shape: ir.TypeAndShape) -> Any:
    shape = type_and_shape.shape
    return (
        str(type_and_shape.type),
        None if shape is None else tuple(str(d) for d in shape),
    )


def _attribute_key(attr: ir.Attr, max_elements: int) -> Any:
    """A hashable key of an attribute, or None when it must not be compared."""
    if attr.is_ref():
        return ("ref", attr.ref_attr_name)
    kind = attr.type
    if kind == ir.AttributeType.TENSOR:
        tensor = attr.value  # the type is checked above; as_tensor() re-checks a slow Protocol
        return _tensor_key(tensor) if tensor.size <= max_elements else None
    if kind == ir.AttributeType.TYPE_PROTO:
        return _type_key(attr.value)
    if kind == ir.AttributeType.TYPE_PROTOS:
        return tuple(_type_key(t) for t in attr.value)
    if kind in _UNCOMPARED_ATTRIBUTES:
        return None
    value = attr.value
    if isinstance(value, Iterable) and not isinstance(value, (str, bytes)):
        value = tuple(value)
    try:
        hash(value)
    except TypeError:  # an attribute kind without a content key: never merge on it
        return None
    return value


def _node_key(node: ir.Node, max_elements: int) -> tuple[Any, ...] | None:
    if node.domain not in KNOWN_DOMAINS:
        return None
    if is_onnx_domain(node.domain) and node.op_type in _RANDOM_OPS:
        return None
    attributes = []
    for name, attr in sorted(node.attributes.items()):
        key = _attribute_key(attr, max_elements)
        if key is None:
            return None
        attributes.append((name, int(attr.type), key))
    return (
        node.op_identifier(),
        len(node.outputs),
        tuple(id(v) if v is not None else None for v in node.inputs),
        tuple(attributes),
    )


def _replace(graph: ir.Graph | ir.Function, duplicate: ir.Node, kept: ir.Node) -> None:
    outputs = list(graph.outputs)
    for old, new in zip(duplicate.outputs, kept.outputs, strict=True):
        if old.is_graph_output():
            for index, value in enumerate(outputs):
                if value is not old:
                    continue
                if new.is_graph_output() or new.is_graph_input():
                    identity = ir.node("Identity", inputs=[new])
                    identity.outputs[0].name = old.name
                    identity.outputs[0].type = old.type
                    identity.outputs[0].shape = old.shape
                    old.name = None
                    graph.insert_before(duplicate, identity)
                    graph.outputs[index] = identity.outputs[0]
                else:
                    name = old.name
                    old.name = None
                    new.name = name
                    # the output keeps its declared type and shape (a graph output needs a
                    # type, and the kept node's value often has none before shape inference)
                    new.type = old.type or new.type
                    new.shape = old.shape if old.shape is not None else new.shape
                    graph.outputs[index] = new
        old.replace_all_uses_with(new)
    graph.remove(duplicate, safe=True)


def _cse_graph(graph: ir.Graph | ir.Function, max_elements: int) -> int:
    seen: dict[tuple[Any, ...], ir.Node] = {}
    merged = 0
    for node in list(graph):
        key = _node_key(node, max_elements)
        if key is None:
            continue
        kept = seen.get(key)
        if kept is None:
            seen[key] = node
            continue
        _replace(graph, node, kept)
        merged += 1
    return merged


@register
class EliminateCommonSubexpressionsPass(IrpassPass):
    """Merge identical nodes (same op, inputs, attributes) in every graph and function."""

    @dataclasses.dataclass(frozen=True)
    class Options:
        """Options of cse."""

        max_tensor_elements: int = option(
            1024, "compare tensor attributes (Constant values) up to this many elements"
        )

    name = "cse"
    lossless = True
    recurses_into_subgraphs = True

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        """Merge duplicates graph by graph."""
        merged = 0
        for graph in list(model.graphs()):
            merged += _cse_graph(graph, self.options.max_tensor_elements)
        for function in model.functions.values():
            merged += _cse_graph(function, self.options.max_tensor_elements)
        if merged:
            self.stats["nodes_merged"] += merged
        return ir.passes.PassResult(model, modified=merged > 0)
