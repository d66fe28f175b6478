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

import math
from collections.abc import Iterable

import onnx

from irpass.errors import UnsupportedModelError

__all__ = ["MAX_DIM", "MAX_INPUT_BYTES", "validate_model_proto"]

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


class _GraphChecker:
    """Checks one graph; returns the names it reads from enclosing scopes."""

    def __init__(self, where: str) -> None:
        self.where = where

    def error(self, message: str, hint: str = _HINT) -> UnsupportedModelError:
        return UnsupportedModelError(f"{self.where}: {message}", hint=hint)

    def check(
        self,
        inputs: Iterable[str],
        initializers: Iterable[str],
        nodes: list[onnx.NodeProto],
        outputs: Iterable[str],
        outer: frozenset[str],
        label: str,
    ) -> tuple[set[str], bool]:
        defined: dict[str, str] = {}
        for name in inputs:
            if name in defined:
                raise self.error(f"{label} declares input {name!r} twice")
            defined[name] = "a graph input"
        for name in initializers:
            if name in defined and defined[name] != "a graph input":
                raise self.error(f"{label} holds two initializers named {name!r}")
            defined.setdefault(name, "an initializer")
        producer: dict[str, int] = {}
        for index, node in enumerate(nodes):
            for out in node.output:
                if not out:
                    continue
                if out in defined:
                    raise self.error(
                        f"value {out!r} in {label} has two producers: "
                        f"{defined[out]} and {_node_label(node, index)}"
                    )
                defined[out] = _node_label(node, index)
                producer[out] = index
        visible = outer | frozenset(defined)
        free: set[str] = set()
        edges: list[set[int]] = [set() for _ in nodes]  # producer index -> consumer indices
        indegree = [0] * len(nodes)
        for index, node in enumerate(nodes):
            deps = {name for name in node.input if name}
            for attr_name, graph in _subgraphs(node):
                sub_label = f"subgraph {attr_name!r} of {_node_label(node, index)}"
                deps |= self.check_graph(graph, visible, sub_label)
            own = set(node.output)
            for name in sorted(deps):
                if name in own:
                    raise self.error(f"{_node_label(node, index)} reads its own output {name!r}")
                if name in producer:
                    source = producer[name]
                    if index not in edges[source]:
                        edges[source].add(index)
                        indegree[index] += 1
                elif name not in defined:
                    if name not in outer:
                        raise self.error(
                            f"{_node_label(node, index)} in {label} reads {name!r}, which no "
                            "node, graph input or initializer produces"
                        )
                    free.add(name)
        order = self._topological_order(nodes, edges, indegree, label)
        for name in outputs:
            if name not in defined and name not in outer:
                raise self.error(
                    f"graph output {name!r} of {label} is produced by no node, input or "
                    "initializer"
                )
            if name not in defined:
                free.add(name)
        return free, order != list(range(len(nodes)))

    def check_graph(self, graph: onnx.GraphProto, outer: frozenset[str], label: str) -> set[str]:
        initializers = [t.name for t in graph.initializer]
        initializers += [s.values.name for s in graph.sparse_initializer]
        for tensor in graph.initializer:
            self.check_tensor(tensor, label)
        free, _ = self.check(
            [v.name for v in graph.input],
            initializers,
            list(graph.node),
            [v.name for v in graph.output],
            outer,
            label,
        )
        return free

    def _topological_order(
        self, nodes: list[onnx.NodeProto], edges: list[set[int]], indegree: list[int], label: str
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
        cycle = " -> ".join(_node_label(nodes[i], i) for i in ring)
        first = _node_label(nodes[ring[0]], ring[0])
        raise self.error(f"{label} has a cycle: {cycle} -> {first}")

    def check_tensor(self, tensor: onnx.TensorProto, label: str) -> None:
        dims = list(tensor.dims)
        for dim in dims:
            if dim < 0 or dim > MAX_DIM:
                raise self.error(f"weight {tensor.name!r} in {label} declares dimension {dim}")
        itemsize = _itemsize(tensor.data_type)
        if itemsize is None:
            return
        expected = math.prod(dims) * itemsize
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            entries = {e.key: e.value for e in tensor.external_data}
            stored = int(entries["length"]) if entries.get("length", "").isdigit() else None
        elif tensor.HasField("raw_data"):
            stored = len(tensor.raw_data)
        else:
            return  # typed fields (float_data, ...) are sized by the protobuf itself
        if stored is not None and stored != expected:
            raise self.error(
                f"weight {tensor.name!r} in {label} declares shape {dims} ({expected} bytes) "
                f"but holds {stored} bytes"
            )


def _check_input_sizes(checker: _GraphChecker, graph: onnx.GraphProto) -> None:
    initializers = {t.name for t in graph.initializer}
    for value in graph.input:
        if value.name in initializers or not value.type.HasField("tensor_type"):
            continue
        tensor_type = value.type.tensor_type
        if not tensor_type.HasField("shape"):
            continue
        dims = []
        for dim in tensor_type.shape.dim:
            if dim.HasField("dim_value"):
                if dim.dim_value < 0 or dim.dim_value > MAX_DIM:
                    raise checker.error(
                        f"graph input {value.name!r} declares dimension {dim.dim_value}",
                        hint="fix the input's declared shape (re-export with the real size)",
                    )
                dims.append(dim.dim_value)
        itemsize = _itemsize(tensor_type.elem_type) or 1
        size = math.prod(dims) * itemsize
        if size > MAX_INPUT_BYTES:
            raise checker.error(
                f"graph input {value.name!r} declares shape "
                f"{[d.dim_value if d.HasField('dim_value') else d.dim_param for d in tensor_type.shape.dim]}"  # noqa: E501
                f": {size / 2**30:.0f} GiB per sample, more than irpass can feed "
                f"({MAX_INPUT_BYTES // 2**30} GiB)",
                hint="fix the input's declared shape (re-export with the real size)",
            )


def validate_model_proto(model: onnx.ModelProto, where: str) -> bool:
    """Raise UnsupportedModelError for a malformed graph; return whether nodes need sorting.

    ``where`` (usually the file path) starts every message. Weights are not read: only their
    declared shapes and sizes are compared.
    """
    checker = _GraphChecker(where)
    graph = model.graph
    initializers = [t.name for t in graph.initializer]
    initializers += [s.values.name for s in graph.sparse_initializer]
    for tensor in graph.initializer:
        checker.check_tensor(tensor, "the main graph")
    _, unsorted = checker.check(
        [v.name for v in graph.input],
        initializers,
        list(graph.node),
        [v.name for v in graph.output],
        frozenset(),
        "the main graph",
    )
    _check_input_sizes(checker, graph)
    for function in model.functions:
        checker.check(
            list(function.input),
            [],
            list(function.node),
            list(function.output),
            frozenset(),
            f"function {function.domain}::{function.name}",
        )
    return unsorted
