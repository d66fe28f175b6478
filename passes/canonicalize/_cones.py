"""Constant cones: what folding a constant subgraph would store, free and remove.

A *cone* is a connected set of nodes computable from stored constants (initializers and
``Constant`` nodes); nodes that read the same stored constant belong to one cone, so that a
weight sliced three ways counts once. For each cone :func:`constant_cones` gives its results
(the values nodes outside it or the graph outputs read), their bytes, the bytes of the stored
constants that die with it (read by nothing else) and whether its results reach a weight slot.
``fold_constants`` decides from this whether folding grows the model.

Result sizes come from the values' annotations, else from ONNX's per-node shape inference run
through the cone (input shapes from annotations or the stored tensors, small stored tensors as
data so shape operands are read). A result whose size stays unknown makes the cone's growth
unknown.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Iterable, Mapping

import onnx
import onnx_ir as ir

from ._common import is_onnx_domain

__all__ = ["Cone", "constant_cones", "stored_bytes"]

logger = logging.getLogger(__name__)

#: Ops the folder never evaluates: the quantized weight format and random generators.
NEVER_FOLD = frozenset(
    {
        "QuantizeLinear",
        "DequantizeLinear",
        "DynamicQuantizeLinear",
        "RandomNormal",
        "RandomNormalLike",
        "RandomUniform",
        "RandomUniformLike",
        "Multinomial",
        "Bernoulli",
    }
)
#: Stored tensors up to this size are passed to shape inference as data (shape operands).
_DATA_BYTES = 1024


@dataclasses.dataclass
class Cone:
    """One connected constant subgraph (see the module docstring)."""

    nodes: list[ir.Node]
    results: list[ir.Value]
    #: bytes of the results, None when a result's size is unknown
    result_bytes: int | None
    #: bytes of all stored constants the cone reads, and of those that die with it
    source_bytes: int
    dying_bytes: int
    #: a result reaches a weight slot (through other nodes too)
    weight: bool

    @property
    def growth(self) -> int | None:
        """Weight bytes folding adds (negative: it saves), None when unknown."""
        return None if self.result_bytes is None else self.result_bytes - self.dying_bytes


def stored_bytes(value: ir.Value) -> int | None:
    """Bytes of a stored constant (initializer or Constant output), None for anything else."""
    if value.const_value is not None and not value.is_graph_input():
        return int(value.const_value.nbytes)
    producer = value.producer()
    if producer is not None and producer.op_type == "Constant" and is_onnx_domain(producer.domain):
        attr = producer.attributes.get("value")
        if attr is not None and attr.type == ir.AttributeType.TENSOR:
            return int(attr.value.nbytes)
        for attr in producer.attributes.values():  # value_ints, value_float, ... forms
            items = attr.value
            return 8 * (len(items) if isinstance(items, (list, tuple)) else 1)
    return None


def _constant_tensor(value: ir.Value) -> ir.TensorProtocol | None:
    """The tensor a stored constant holds (an initializer's, or a Constant node's value)."""
    if value.const_value is not None:
        return value.const_value
    producer = value.producer()
    if producer is not None and producer.op_type == "Constant" and is_onnx_domain(producer.domain):
        attr = producer.attributes.get("value")
        if attr is not None and attr.type == ir.AttributeType.TENSOR:
            return attr.value
    return None


def _computable(node: ir.Node, constant: set[ir.Value]) -> bool:
    if not is_onnx_domain(node.domain) or node.op_type in NEVER_FOLD or node.op_type == "Constant":
        return False
    graph_types = (ir.AttributeType.GRAPH, ir.AttributeType.GRAPHS)
    if any(a.type in graph_types for a in node.attributes.values()):
        return False
    return all(v is None or v in constant for v in node.inputs)


class _Sets:
    """Union-find over nodes."""

    def __init__(self) -> None:
        self.parent: dict[ir.Node, ir.Node] = {}

    def find(self, node: ir.Node) -> ir.Node:
        root = node
        while self.parent[root] is not root:
            root = self.parent[root]
        while self.parent[node] is not root:
            self.parent[node], node = root, self.parent[node]
        return root

    def union(self, a: ir.Node, b: ir.Node) -> None:
        self.parent[self.find(a)] = self.find(b)


def constant_cones(model: ir.Model, weight_values: set[ir.Value]) -> dict[ir.Node, Cone]:
    """Every node computable from stored constants, mapped to its cone."""
    stored: dict[ir.Value, int] = {}
    constant: set[ir.Value] = set()
    order: list[ir.Node] = []
    sets = _Sets()
    first_reader: dict[ir.Value, ir.Node] = {}
    for graph in model.graphs():
        for value in graph.initializers.values():
            size = stored_bytes(value)
            if size is not None:
                stored[value] = size
                constant.add(value)
        for node in graph:
            if node.op_type == "Constant" and is_onnx_domain(node.domain) and node.outputs:
                size = stored_bytes(node.outputs[0])
                if size is not None:
                    stored[node.outputs[0]] = size
                    constant.add(node.outputs[0])
                continue
            if not _computable(node, constant):
                continue
            order.append(node)
            sets.parent[node] = node
            constant.update(node.outputs)
            for operand in node.inputs:
                if operand is None:
                    continue
                producer = operand.producer()
                if producer is not None and producer in sets.parent:
                    sets.union(node, producer)
                elif operand in stored:  # readers of one stored constant share a cone
                    if operand in first_reader:
                        sets.union(node, first_reader[operand])
                    else:
                        first_reader[operand] = node
    groups: dict[ir.Node, list[ir.Node]] = {}
    for node in order:
        groups.setdefault(sets.find(node), []).append(node)
    cones: dict[ir.Node, Cone] = {}
    opsets = dict(model.opset_imports)
    for nodes in groups.values():
        cone = _cone(nodes, stored, weight_values, opsets)
        for node in nodes:
            cones[node] = cone
    return cones


def _cone(
    nodes: list[ir.Node],
    stored: dict[ir.Value, int],
    weights: set[ir.Value],
    opsets: Mapping[str, int],
) -> Cone:
    members = set(nodes)
    results: list[ir.Value] = []
    for node in nodes:
        for value in node.outputs:
            if value.is_graph_output() or any(user not in members for user, _ in value.uses()):
                results.append(value)
    sources = {v for node in nodes for v in node.inputs if v is not None and v in stored}
    dying = [
        v
        for v in sources
        if not v.is_graph_output() and all(user in members for user, _ in v.uses())
    ]
    sizes, shapes = _result_sizes(nodes, stored, opsets)
    result_bytes: int | None = 0
    for value in results:
        size = sizes.get(value)
        if size is None or result_bytes is None:
            result_bytes = None
        else:
            result_bytes += size
    return Cone(
        nodes=nodes,
        results=results,
        result_bytes=result_bytes,
        source_bytes=sum(stored[v] for v in sources),
        dying_bytes=sum(stored[v] for v in dying),
        weight=any(v in weights or _channel_operand(v, shapes.get(v), members) for v in results),
    )


#: Elementwise ops whose constant operand a fusion folds into the neighbouring weight.
_AFFINE_OPS = frozenset({"Mul", "Add", "Sub", "Div"})


def _channel_operand(value: ir.Value, shape: tuple[int, ...] | None, members: set[ir.Node]) -> bool:
    """A per-channel vector (one dim other than 1) that scales or shifts a computed value.

    That is a weight too: ``fold_channel_affine`` folds it into the Conv / BatchNormalization
    before it (Caffe-style Scale layers exported as ``Mul``/``Add`` after BatchNormalization).
    """
    if shape is None or sum(1 for d in shape if d != 1) > 1:
        return False
    for user, index in value.uses():
        if user in members or user.op_type not in _AFFINE_OPS or not is_onnx_domain(user.domain):
            continue
        other = user.inputs[1 - index] if len(user.inputs) == 2 else None
        if other is None or other.const_value is not None:
            continue
        producer = other.producer()
        if producer is None or producer.op_type != "Constant":  # an activation
            return True
    return False


def _static(shape: ir.Shape | None) -> tuple[int, ...] | None:
    if shape is None:
        return None
    dims = [d for d in shape if isinstance(d, int)]
    return tuple(dims) if len(dims) == len(shape) else None


def _nbytes(shape: tuple[int, ...], dtype: ir.DataType | None) -> int | None:
    if dtype is None:
        return None
    try:
        return math.ceil(math.prod(shape) * dtype.itemsize)
    except (AttributeError, ValueError, TypeError):
        return None


_Info = tuple[tuple[int, ...], ir.DataType]


def _result_sizes(
    nodes: Iterable[ir.Node], stored: dict[ir.Value, int], opsets: Mapping[str, int]
) -> tuple[dict[ir.Value, int], dict[ir.Value, tuple[int, ...]]]:
    """Bytes and shapes of the cone's outputs whose size is known (see the module doc)."""
    known: dict[ir.Value, _Info] = {}
    sizes: dict[ir.Value, int] = {}
    shapes: dict[ir.Value, tuple[int, ...]] = {}

    def shape_of(value: ir.Value) -> _Info | None:
        if value in known:
            return known[value]
        tensor = _constant_tensor(value)
        if tensor is not None:
            return tuple(int(d) for d in tensor.shape.numpy()), tensor.dtype
        dims = _static(value.shape)
        if dims is not None and value.dtype is not None:
            return dims, value.dtype
        return None

    for node in nodes:
        annotated = [shape_of(v) for v in node.outputs]
        if any(a is None for a in annotated):
            annotated = _infer(node, shape_of, stored, opsets) or annotated
        for value, info in zip(node.outputs, annotated, strict=True):
            if info is None:
                continue
            known[value] = info
            size = _nbytes(*info)
            if size is not None:
                sizes[value] = size
            shapes[value] = info[0]
    return sizes, shapes


def _infer(
    node: ir.Node,
    shape_of: Callable[[ir.Value], _Info | None],
    stored: dict[ir.Value, int],
    opsets: Mapping[str, int],
) -> list[_Info | None] | None:
    """Output shapes of one node by ONNX's per-node shape inference; None when it fails."""
    types: dict[str, onnx.TypeProto] = {}
    data: dict[str, onnx.TensorProto] = {}
    for value in node.inputs:
        if value is None:
            continue
        info = shape_of(value)
        if info is None or not value.name:
            return None
        types[value.name] = onnx.helper.make_tensor_type_proto(int(info[1]), list(info[0]))
        tensor = _constant_tensor(value)
        if tensor is not None and stored.get(value, _DATA_BYTES + 1) <= _DATA_BYTES:
            data[value.name] = ir.serde.serialize_tensor(tensor)
    version = node.version or opsets.get(node.domain, opsets.get("", 0))
    try:
        schema = onnx.defs.get_schema(node.op_type, int(version or 0), node.domain)
        inferred = onnx.shape_inference.infer_node_outputs(
            schema, ir.serde.serialize_node(node), types, data
        )
    except Exception as exc:  # best effort: an unknown size only means "do not fold"
        logger.debug("no shape for the outputs of %s: %s", node.name, exc)
        return None
    result: list[_Info | None] = []
    for value in node.outputs:
        proto = inferred.get(value.name or "")
        if proto is None or not proto.HasField("tensor_type"):
            result.append(None)
            continue
        shape = proto.tensor_type.shape
        dims = [d.dim_value if d.HasField("dim_value") else None for d in shape.dim]
        if not proto.tensor_type.HasField("shape") or any(d is None for d in dims):
            result.append(None)
            continue
        dtype = ir.DataType(proto.tensor_type.elem_type)
        result.append((tuple(int(d) for d in dims if d is not None), dtype))
    return result
