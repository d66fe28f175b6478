"""Graph validation that runs before anything else touches a model.

ONNX files can hold graphs no tool should try to process: a cycle (``a = Add(x, b)``,
``b = Relu(a)``), a node reading its own output, an input no node, graph input or
initializer produces, two producers of one value, an input declared as ``float[1, 2^40]``
(random verification inputs would need terabytes), a weight whose declared shape does not
match the bytes it holds. :func:`validate_model_proto` finds these on the protobuf, before
onnx-ir deserializes it (several of them crash deserialization or ``Model.clone()``), and raises
one :class:`~irpass.errors.UnsupportedModelError` naming the node or value. It recurses into
If/Loop/Scan bodies (which may read values of the enclosing graphs) and model-local functions.

Nodes that are acyclic but not listed in topological order are accepted (ONNX Runtime sorts
them too); :func:`validate_model_proto` returns whether the main graph needs sorting.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Hashable, Iterable

import onnx
import onnx_ir as ir

from irpass.errors import UnsupportedModelError

__all__ = ["MAX_DIM", "MAX_INPUT_BYTES", "validate_model", "validate_model_proto"]

#: Largest dimension irpass accepts in a declared input or weight shape.
MAX_DIM = 2**31 - 1
#: Largest size of one graph input (one sample at the declared shape, symbolic dims = 1).
MAX_INPUT_BYTES = 2**32

_HINT = "the file is not a valid ONNX graph; re-export the model (the ONNX checker names the same)"


def _node_label(node: onnx.NodeProto, index: int) -> str:
    name = node.name or f"#{index}"
    return f"node {name!r} ({node.op_type})"


def _itemsize(elem_type: int) -> int | None:
    try:
        dtype = onnx.helper.tensor_dtype_to_np_dtype(elem_type)
    except (KeyError, ValueError, TypeError):
        return None
    if dtype.kind in "OUS":  # strings have no fixed size
        return None
    return int(dtype.itemsize)


def _subgraphs(node: onnx.NodeProto) -> Iterable[tuple[str, onnx.GraphProto]]:
    for attr in node.attribute:
        if attr.type == onnx.AttributeProto.GRAPH:
            yield attr.name, attr.g
        elif attr.type == onnx.AttributeProto.GRAPHS:
            for i, graph in enumerate(attr.graphs):
                yield f"{attr.name}[{i}]", graph


@dataclasses.dataclass
class _Node:
    """What the checks need of a node: values read and written (keys), nested graphs."""

    label: str
    inputs: list[Hashable]
    outputs: list[Hashable]
    subgraphs: Callable[[], Iterable[tuple[str, _Graph]]]


@dataclasses.dataclass
class _Graph:
    """What the checks need of a graph; keys are names (protobuf) or ``ir.Value`` objects."""

    inputs: list[Hashable]
    initializers: list[Hashable]
    nodes: list[_Node]
    outputs: list[Hashable]
    check_weights: Callable[[str], None] = lambda label: None


class _GraphChecker:
    """Checks one graph; returns the values it reads from enclosing scopes.

    ``name`` turns a value key into the name printed in messages: for a protobuf keys are
    names; for an ``ir.Value`` two distinct values may carry one name, which serializes
    into two producers of that name and is reported as such.
    """

    def __init__(self, where: str, name: Callable[[Hashable], str] = str) -> None:
        self.where = where
        self.name = name

    def error(self, message: str, hint: str = _HINT) -> UnsupportedModelError:
        return UnsupportedModelError(f"{self.where}: {message}", hint=hint)

    def check(self, graph: _Graph, outer: frozenset[Hashable], label: str) -> tuple[set, bool]:
        """Return (values read from enclosing graphs, whether nodes are out of order)."""
        graph.check_weights(label)
        defined: dict[Hashable, str] = {}
        by_name: dict[str, str] = {}

        def define(key: Hashable, what: str) -> None:
            name = self.name(key)
            if name in by_name and key not in defined:
                raise self.error(
                    f"value {name!r} in {label} has two producers: {by_name[name]} and {what}"
                )
            defined[key] = what
            if name:
                by_name[name] = what

        for key in graph.inputs:
            if key in defined:
                raise self.error(f"{label} declares input {self.name(key)!r} twice")
            define(key, "a graph input")
        for key in graph.initializers:
            if key in defined and defined[key] != "a graph input":
                raise self.error(f"{label} holds two initializers named {self.name(key)!r}")
            if key not in defined:
                define(key, "an initializer")
        producer: dict[Hashable, int] = {}
        for index, node in enumerate(graph.nodes):
            for out in node.outputs:
                if out in defined:
                    raise self.error(
                        f"value {self.name(out)!r} in {label} has two producers: "
                        f"{defined[out]} and {node.label}"
                    )
                define(out, node.label)
                producer[out] = index
        visible = outer | frozenset(defined)
        free: set[Hashable] = set()
        unsorted = False
        edges: list[set[int]] = [set() for _ in graph.nodes]  # producer -> consumer indices
        indegree = [0] * len(graph.nodes)
        for index, node in enumerate(graph.nodes):
            deps = set(node.inputs)
            for attr_name, subgraph in node.subgraphs():
                sub_free, sub_unsorted = self.check(
                    subgraph, visible, f"subgraph {attr_name!r} of {node.label}"
                )
                deps |= sub_free
                unsorted = unsorted or sub_unsorted
            own = set(node.outputs)
            for key in sorted(deps, key=self.name):
                if key in own:
                    raise self.error(f"{node.label} reads its own output {self.name(key)!r}")
                if key in producer:
                    source = producer[key]
                    if index not in edges[source]:
                        edges[source].add(index)
                        indegree[index] += 1
                elif key not in defined:
                    if key not in outer:
                        raise self.error(
                            f"{node.label} in {label} reads {self.name(key)!r}, which no "
                            "node, graph input or initializer produces"
                        )
                    free.add(key)
        order = self._topological_order(graph.nodes, edges, indegree, label)
        for key in graph.outputs:
            if key not in defined and key not in outer:
                raise self.error(
                    f"graph output {self.name(key)!r} of {label} is produced by no node, input "
                    "or initializer"
                )
            if key not in defined:
                free.add(key)
        return free, unsorted or order != list(range(len(graph.nodes)))

    def _topological_order(
        self, nodes: list[_Node], edges: list[set[int]], indegree: list[int], label: str
    ) -> list[int]:
        ready = [i for i, d in enumerate(indegree) if d == 0]
        remaining = list(indegree)
        order: list[int] = []
        while ready:
            index = ready.pop(0)
            order.append(index)
            for consumer in sorted(edges[index]):
                remaining[consumer] -= 1
                if remaining[consumer] == 0:
                    ready.append(consumer)
        if len(order) == len(nodes):
            return order
        # Every node left lies on or behind a cycle; walk predecessors until one repeats.
        stuck = {i for i, d in enumerate(remaining) if d > 0}
        predecessor = {c: p for p in stuck for c in edges[p] if c in stuck}
        start = min(stuck)
        path = [start]
        while predecessor.get(path[-1]) is not None and predecessor[path[-1]] not in path:
            path.append(predecessor[path[-1]])
        if predecessor.get(path[-1]) in path:
            path = path[path.index(predecessor[path[-1]]) :]
        ring = list(reversed(path))  # producer before consumer
        start_at = ring.index(min(ring))
        ring = ring[start_at:] + ring[:start_at]
        cycle = " -> ".join(nodes[i].label for i in ring)
        raise self.error(f"{label} has a cycle: {cycle} -> {nodes[ring[0]].label}")

    def check_dims(self, dims: list[int], what: str, label: str) -> None:
        for dim in dims:
            if dim < 0 or dim > MAX_DIM:
                raise self.error(f"{what} in {label} declares dimension {dim}")


# -- protobuf views ----------------------------------------------------------------------


def _proto_tensor_check(checker: _GraphChecker, tensor: onnx.TensorProto, label: str) -> None:
    dims = list(tensor.dims)
    what = f"weight {tensor.name!r}"
    checker.check_dims(dims, what, label)
    if tensor.data_location == onnx.TensorProto.EXTERNAL:
        entries = {e.key: e.value for e in tensor.external_data}
        stored = int(entries["length"]) if entries.get("length", "").isdigit() else None
    elif tensor.HasField("raw_data"):
        stored = len(tensor.raw_data)
    else:
        return  # typed fields (float_data, ...) are sized by the protobuf itself
    itemsize = _itemsize(tensor.data_type)
    if itemsize is None or stored is None:
        return
    expected = math.prod(dims) * itemsize
    if stored != expected:
        raise checker.error(
            f"{what} in {label} declares shape {dims} ({expected} bytes) but holds {stored} bytes"
        )


def _proto_nodes(nodes: Iterable[onnx.NodeProto], checker: _GraphChecker) -> list[_Node]:
    return [
        _Node(
            _node_label(node, index),
            [name for name in node.input if name],
            [name for name in node.output if name],
            functools.partial(_proto_subgraphs, node, checker),
        )
        for index, node in enumerate(nodes)
    ]


def _proto_subgraphs(node: onnx.NodeProto, checker: _GraphChecker) -> Iterable[tuple[str, _Graph]]:
    for attr_name, graph in _subgraphs(node):
        yield attr_name, _proto_graph(graph, checker)


def _proto_graph(graph: onnx.GraphProto, checker: _GraphChecker) -> _Graph:
    def check_weights(label: str) -> None:
        for tensor in graph.initializer:
            _proto_tensor_check(checker, tensor, label)

    initializers = [t.name for t in graph.initializer]
    initializers += [s.values.name for s in graph.sparse_initializer]
    return _Graph(
        [v.name for v in graph.input],
        initializers,
        _proto_nodes(graph.node, checker),
        [v.name for v in graph.output],
        check_weights,
    )


# -- onnx-ir views -------------------------------------------------------------------------


def _ir_name(value: Hashable) -> str:
    assert isinstance(value, ir.Value)
    return value.name or ""


def _ir_tensor_check(checker: _GraphChecker, value: ir.Value, label: str) -> None:
    what = f"weight {value.name!r}"
    tensor = value.const_value
    if tensor is None:
        raise checker.error(
            f"initializer {value.name!r} in {label} holds no tensor",
            hint="give every registered initializer a const_value (an ir.Tensor)",
        )
    dims = [int(d) for d in tensor.shape.numpy()]
    checker.check_dims(dims, what, label)
    if isinstance(tensor, ir.ExternalTensor) and tensor.dtype != ir.DataType.STRING:
        expected = tensor.nbytes  # from shape and dtype (4-bit types round up)
        if tensor.length != expected:
            raise checker.error(
                f"{what} in {label} declares shape {dims} ({expected} bytes) but holds "
                f"{tensor.length} bytes"
            )


def _ir_nodes(nodes: Iterable[ir.Node], checker: _GraphChecker) -> list[_Node]:
    return [
        _Node(
            f"node {node.name or f'#{index}'!r} ({node.op_type})",
            [value for value in node.inputs if value is not None],
            list(node.outputs),
            functools.partial(_ir_subgraphs, node, checker),
        )
        for index, node in enumerate(nodes)
    ]


def _ir_subgraphs(node: ir.Node, checker: _GraphChecker) -> Iterable[tuple[str, _Graph]]:
    for attr in node.attributes.values():
        if attr.type == ir.AttributeType.GRAPH:
            yield attr.name, _ir_graph(attr.as_graph(), checker)
        elif attr.type == ir.AttributeType.GRAPHS:
            for i, graph in enumerate(attr.as_graphs()):
                yield f"{attr.name}[{i}]", _ir_graph(graph, checker)


def _ir_graph(graph: ir.Graph, checker: _GraphChecker) -> _Graph:
    def check_weights(label: str) -> None:
        for value in graph.initializers.values():
            _ir_tensor_check(checker, value, label)

    return _Graph(
        list(graph.inputs),
        list(graph.initializers.values()),
        _ir_nodes(graph, checker),
        list(graph.outputs),
        check_weights,
    )


def _check_input_size(
    checker: _GraphChecker, name: str, dims: list[int | str], itemsize: float | None
) -> None:
    """An input whose one sample (symbolic dims = 1) could not be fed is refused."""
    hint = "fix the input's declared shape (re-export with the real size)"
    for dim in dims:
        if isinstance(dim, int) and (dim < 0 or dim > MAX_DIM):
            raise checker.error(f"graph input {name!r} declares dimension {dim}", hint=hint)
    size = math.prod(d for d in dims if isinstance(d, int)) * (itemsize or 1)
    if size > MAX_INPUT_BYTES:
        raise checker.error(
            f"graph input {name!r} declares shape {dims}: {size / 2**30:.0f} GiB per sample, "
            f"more than irpass can feed ({MAX_INPUT_BYTES // 2**30} GiB)",
            hint=hint,
        )


def validate_model_proto(model: onnx.ModelProto, where: str) -> bool:
    """Raise UnsupportedModelError for a malformed graph; return whether nodes need sorting.

    ``where`` (usually the file path) starts every message. Weights are not read: only their
    declared shapes and sizes are compared.
    """
    checker = _GraphChecker(where)
    graph = model.graph
    _, unsorted = checker.check(_proto_graph(graph, checker), frozenset(), "the main graph")
    initializers = {t.name for t in graph.initializer}
    for value in graph.input:
        if value.name in initializers or not value.type.HasField("tensor_type"):
            continue
        tensor_type = value.type.tensor_type
        if tensor_type.HasField("shape"):
            dims: list[int | str] = [
                d.dim_value if d.HasField("dim_value") else d.dim_param
                for d in tensor_type.shape.dim
            ]
            _check_input_size(checker, value.name, dims, _itemsize(tensor_type.elem_type))
    for function in model.functions:
        checker.check(
            _Graph(
                list(function.input),
                [],
                _proto_nodes(function.node, checker),
                list(function.output),
            ),
            frozenset(),
            f"function {function.domain}::{function.name}",
        )
    return unsorted


def validate_model(model: ir.Model, where: str = "the model") -> bool:
    """:func:`validate_model_proto` for an ``ir.Model`` (e.g. one a library caller built).

    Values are followed by identity, so a node input that is not produced in the graph (or an
    enclosing one) is found even when another value carries its name; two values with one
    name are reported as two producers, which is what they become when serialized. Returns
    whether nodes (main graph or subgraphs) are out of topological order.
    """
    checker = _GraphChecker(where, _ir_name)
    graph = model.graph
    _, unsorted = checker.check(_ir_graph(graph, checker), frozenset(), "the main graph")
    for value in graph.inputs:
        if value.is_initializer() or value.shape is None or value.dtype is None:
            continue
        dims = [d if isinstance(d, int) else str(d) for d in value.shape]
        itemsize = None if value.dtype == ir.DataType.STRING else value.dtype.itemsize
        _check_input_size(checker, value.name or "", dims, itemsize)
    for function in model.functions.values():
        checker.check(
            _Graph(
                list(function.inputs),
                [],
                _ir_nodes(function, checker),
                list(function.outputs),
            ),
            frozenset(),
            f"function {function.domain}::{function.name}",
        )
    return unsorted
