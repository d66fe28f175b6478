"""Cheap fingerprints: did a pass change the model, what, and did it change what it computes.

- :class:`StructureSnapshot` records everything a pass can change (opsets, signature,
  initializers, every node with its attributes, inputs and outputs, value names and
  annotations, functions, subgraphs): objects by identity, since passes rewrite the IR in
  place, and annotations (shapes, types) by value, so a pass that re-sets a value's shape to an
  equal one has not changed anything. The manager takes one after every pass: a pass that
  changed the model but reported ``modified=False`` is caught and verified anyway, instead of a
  later innocent pass getting the blame; the difference of two snapshots
  (:meth:`StructureSnapshot.changed_nodes`) is what the pass touched, which the cost analysis and
  region verification work from.
- :func:`computation_fingerprint` hashes *what the graph outputs compute* (a Merkle hash over the
  graph: each value's hash is its op, domain, the operator's resolved schema version,
  attributes and the hashes of its inputs; weights by content; the graph's inputs and outputs
  with their declared types). Value names, node order, dead code, Identity nodes, duplicated or
  deduplicated computations and the annotations of intermediate values (they do not change
  what is computed) do not enter it. Two models with equal computation fingerprints compute the
  same function bit for bit, so a pass that only removed dead code, deduplicated weights,
  merged equal nodes or annotated shapes is proven equal without running it.

Tensor contents are hashed once per tensor object (a :class:`TensorHasher` keeps the hashes).
Tensors whose data can change in place (an ``ir.Tensor`` over a numpy array) have a strided
sample re-read every time, so that a tensor mutated in place is hashed again; tensors read from
a file (protobuf or external data) cannot change and are not re-read.
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import onnx
import onnx_ir as ir

__all__ = ["StructureSnapshot", "TensorHasher", "computation_fingerprint", "structure_snapshot"]

_SAMPLES = 64
#: Tensor classes whose data cannot change once created (read from a file).
_IMMUTABLE_TENSORS: tuple[type, ...] = (ir.serde.TensorProtoTensor, ir.ExternalTensor)


def _digest(*parts: Any) -> str:
    h = hashlib.blake2b(digest_size=16)
    for part in parts:
        h.update(repr(part).encode())
        h.update(b"\x00")
    return h.hexdigest()


def _fill_digest(dtype: np.dtype, shape: tuple[int, ...], element: bytes) -> str:
    """The content hash of a tensor holding one value everywhere (what ConstantOfShape makes)."""
    return _digest("fill", dtype.str, tuple(int(d) for d in shape), element)


def _uniform_element(array: np.ndarray) -> bytes | None:
    """The bytes of the one value every element of ``array`` holds (bit for bit), else None."""
    flat = array.reshape(-1)
    if flat.size == 0 or array.dtype.kind == "O":
        return None
    first = flat[:1].view(np.uint8).tobytes()
    if flat.size > 1 and flat.dtype.itemsize in (1, 2, 4, 8):
        words = flat.view(f"u{flat.dtype.itemsize}")
        if not bool((words == words[0]).all()):
            return None
    elif flat.size > 1:
        rows = flat.view(np.uint8).reshape(flat.size, -1)
        if not bool((rows == rows[0]).all()):
            return None
    return first


class TensorHasher:
    """Content hashes of tensors, computed once per tensor object and kept while it lives."""

    def __init__(self) -> None:
        self._cache: dict[int, tuple[Any, np.ndarray | None, str]] = {}
        self._seen: set[int] = set()

    @staticmethod
    def _array(tensor: ir.TensorProtocol) -> np.ndarray | None:
        try:
            return np.ascontiguousarray(tensor.numpy())
        except Exception:  # string tensors, unreadable external data
            return None

    @staticmethod
    def _sample(array: np.ndarray) -> np.ndarray:
        flat = array.reshape(-1)
        return flat[:: max(1, flat.size // _SAMPLES)][:_SAMPLES].copy()

    @staticmethod
    def _mutable_array(tensor: ir.TensorProtocol) -> np.ndarray | None:
        """The array an in-place change would alter, without converting anything."""
        raw = getattr(tensor, "raw", None) if isinstance(tensor, ir.Tensor) else None
        return raw if isinstance(raw, np.ndarray) and raw.flags.c_contiguous else None

    def _unchanged(self, tensor: ir.TensorProtocol, sample: np.ndarray | None) -> bool:
        """Whether a tensor hashed before still holds the same data (strided sample)."""
        if isinstance(tensor, _IMMUTABLE_TENSORS) or sample is None:
            return True
        array = self._mutable_array(tensor)
        if array is None:
            array = self._array(tensor)
            if array is None:
                return True
        if array.dtype.kind == "O":
            return bool(np.array_equal(sample, self._sample(array)))
        return bool(np.array_equal(sample, self._sample(array), equal_nan=array.dtype.kind in "fc"))

    def content(self, tensor: ir.TensorProtocol) -> str:
        """A hash of dtype, shape and every byte of ``tensor``."""
        key = id(tensor)
        self._seen.add(key)
        cached = self._cache.get(key)
        if cached is not None and cached[0] is tensor and self._unchanged(tensor, cached[1]):
            return cached[2]
        array = self._array(tensor)
        sample: np.ndarray | None = None
        if array is None:
            full = _digest("opaque", str(tensor.dtype), tuple(tensor.shape.numpy()), id(tensor))
        elif (element := _uniform_element(array)) is not None:
            # by value, so that a ConstantOfShape and its materialized result hash alike
            full = _fill_digest(array.dtype, array.shape, element)
            if not isinstance(tensor, _IMMUTABLE_TENSORS):
                sample = self._sample(array)
        else:
            h = hashlib.blake2b(digest_size=16)
            h.update(f"{array.dtype.str}{array.shape}".encode())
            if array.dtype.kind == "O":
                h.update(repr(array.tolist()).encode())
            else:  # bytes of any dtype, bfloat16 / float8 (ml_dtypes) included
                h.update(array.reshape(-1).view(np.uint8).data)
            full = h.hexdigest()
            if not isinstance(tensor, _IMMUTABLE_TENSORS):
                sample = self._sample(array)
        self._cache[key] = (tensor, sample, full)
        return full

    def token(self, tensor: ir.TensorProtocol) -> Any:
        """Which tensor this is and, if its data can change in place, a strided sample of it.

        Equal tokens of one tensor object mean unchanged data (up to the sample), as in
        :meth:`content`, without hashing every byte: a snapshot only asks "did it change?".
        The caller keeps ``tensor`` alive (its ``id`` is part of the token).
        """
        if isinstance(tensor, _IMMUTABLE_TENSORS):
            return id(tensor)
        array = self._mutable_array(tensor)
        if array is None:
            array = self._array(tensor)
        if array is None or array.dtype.kind == "O":
            return (id(tensor), None if array is None else repr(self._sample(array).tolist()))
        return (id(tensor), self._sample(array).tobytes())

    def prune(self) -> None:
        """Forget tensors not hashed since the last prune (lets replaced weights be freed)."""
        self._cache = {k: v for k, v in self._cache.items() if k in self._seen}
        self._seen = set()


# -- what a pass changed -------------------------------------------------------------------


def _type_key(type_: ir.TypeProtocol | None) -> Any:
    if type_ is None:
        return None
    if isinstance(type_, (ir.TensorType, ir.SparseTensorType)):
        return (type_.__class__, type_.dtype)
    return repr(type_)  # sequence / optional types: rare, compared by their full text


def _value_key(value: ir.Value) -> tuple[Any, ...]:
    """A value with its name and annotations; annotations by value (equal re-sets are no change)."""
    shape = value.shape
    return (value, value.name, None if shape is None else shape.dims, _type_key(value.type))


class StructureSnapshot:
    """What a model looked like after a pass, compared within one run (see the module doc).

    Attributes:
        header: IR version, opset imports and model-local functions.
        graphs: Per graph (main graph first, then subgraphs): the graph object, its inputs,
            outputs and initializers (name, value, tensor object and content hash).
        nodes: Every node of every graph and function with its record: op type, domain,
            overload, version, name, attributes, input values and output values with names and
            annotations; the main graph's nodes first, in graph order.
        main_count: How many of ``nodes`` (the first ones) belong to the main graph.
    """

    __slots__ = ("graphs", "header", "main_count", "nodes")

    def __init__(self, model: ir.Model, hasher: TensorHasher) -> None:
        self.nodes: dict[ir.Node, tuple[Any, ...]] = {}
        self.graphs: list[tuple[Any, ...]] = []
        pending = [model.graph]
        while pending:
            graph = pending.pop(0)
            initializers = tuple(
                (
                    name,
                    _value_key(value),
                    value.const_value,
                    hasher.token(value.const_value) if value.const_value is not None else None,
                )
                for name, value in graph.initializers.items()
            )
            self.graphs.append(
                (
                    graph,
                    tuple(_value_key(v) for v in graph.inputs),
                    tuple(_value_key(v) for v in graph.outputs),
                    initializers,
                )
            )
            for node in graph:
                self.nodes[node] = self._record(node, hasher, pending)
            if len(self.graphs) == 1:
                self.main_count = len(self.nodes)
        functions = []
        for key, function in sorted(model.functions.items()):
            functions.append((key, function))
            for node in function:
                self.nodes[node] = self._record(node, hasher)
        self.header = (model.ir_version, sorted(model.opset_imports.items()), functions)

    @staticmethod
    def _record(
        node: ir.Node, hasher: TensorHasher, subgraphs: list[ir.Graph] | None = None
    ) -> tuple[Any, ...]:
        """The node's record; its subgraphs are appended to ``subgraphs`` (one attribute walk)."""
        attributes: list[tuple[str, Any, str | None]] = []
        for name, attr in node.attributes.items():
            kind = attr.type
            if kind == ir.AttributeType.TENSOR and not attr.is_ref():
                attributes.append((name, attr, hasher.token(attr.value)))
                continue
            attributes.append((name, attr, None))
            if subgraphs is not None and not attr.is_ref():
                if kind == ir.AttributeType.GRAPH:
                    subgraphs.append(attr.as_graph())
                elif kind == ir.AttributeType.GRAPHS:
                    subgraphs.extend(attr.as_graphs())
        return (
            node.op_type,
            node.domain,
            node.overload,
            node.version,
            node.name,
            tuple(attributes),
            tuple(node.inputs),
            tuple(_value_key(v) for v in node.outputs),
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, StructureSnapshot):
            return NotImplemented
        return (
            self.header == other.header
            and self.graphs == other.graphs
            and self.nodes == other.nodes
        )

    __hash__ = None  # type: ignore[assignment]  # mutable content, compared by value

    def changed_nodes(self, before: StructureSnapshot) -> list[ir.Node]:
        """Nodes that are new since ``before`` or whose record differs, in graph order."""
        old = before.nodes
        return [node for node, record in self.nodes.items() if old.get(node) != record]

    def removed_nodes(self, before: StructureSnapshot) -> list[ir.Node]:
        """Nodes of ``before`` that are gone or were changed (their old records are in it)."""
        new = self.nodes
        return [node for node, record in before.nodes.items() if new.get(node) != record]


def structure_snapshot(model: ir.Model, hasher: TensorHasher | None = None) -> StructureSnapshot:
    """Take a :class:`StructureSnapshot` of ``model``."""
    return StructureSnapshot(model, hasher or TensorHasher())


# -- what the model computes ---------------------------------------------------------------


@functools.lru_cache(maxsize=4096)
def _since_version(op_type: str, domain: str, opset: int) -> int:
    """The version of the operator schema in force.

    Ops whose schema did not change between two opsets hash equal across an opset upgrade.
    """
    try:
        return int(onnx.defs.get_schema(op_type, opset, domain).since_version)
    except Exception:  # custom or unknown ops: the imported opset is all we know
        return opset


def _annotation(value: ir.Value) -> tuple[Any, Any]:
    shape = value.shape
    dims = None if shape is None else tuple(d if isinstance(d, int) else str(d) for d in shape)
    return (value.dtype, dims)


def _constant_of_shape(node: ir.Node, fed: Callable[[ir.Value], bool]) -> str | None:
    """The content hash of a ConstantOfShape's result when its shape is a stored constant.

    ``fed`` tells whether the runs feed a graph input (one with a default that they do not
    feed is that constant).
    """
    shape_value = node.inputs[0] if node.inputs else None
    if shape_value is None or shape_value.const_value is None:
        return None
    if shape_value.is_graph_input() and fed(shape_value):
        return None
    try:
        shape = tuple(int(d) for d in shape_value.const_value.numpy().reshape(-1))
        attr = node.attributes.get("value")
        # attr.value, not as_tensor(): that checks a runtime Protocol, which cost more than
        # the rest of the fingerprint on the light zoo's ConstantOfShape weights
        if attr is not None and attr.type != ir.AttributeType.TENSOR:
            return None
        element = (
            np.zeros(1, np.float32)
            if attr is None
            else np.ascontiguousarray(attr.value.numpy()).reshape(-1)[:1]
        )
    except Exception:  # unreadable operands: hashed as the op it is
        return None
    if element.size != 1 or math.prod(shape) == 0 or any(d < 0 for d in shape):
        return None
    return _fill_digest(element.dtype, shape, element.view(np.uint8).tobytes())


class _Merkle:
    def __init__(
        self, model: ir.Model, hasher: TensorHasher, fed: frozenset[str] | None = None
    ) -> None:
        self.opsets = dict(model.opset_imports)
        self.hasher = hasher
        self.fed = fed
        self.memo: dict[int, str] = {}
        self.keep: list[Any] = []  # keeps memo keys alive while hashing

    def value(self, value: ir.Value | None) -> str:
        if value is None:
            return "none"
        key = id(value)
        found = self.memo.get(key)
        if found is not None:
            return found
        self.keep.append(value)
        result = self._value(value)
        self.memo[key] = result
        return result

    def _value(self, value: ir.Value) -> str:
        tensor = value.const_value
        if tensor is not None and (value.is_initializer() or value.producer() is None):
            # an overridable initializer stays an input, unless the runs never feed it
            if not value.is_graph_input() or not self._fed(value):
                return _digest("const", self.hasher.content(tensor))
        node = value.producer()
        if node is None:
            return _digest("input", value.name, _annotation(value))
        if node.op_type == "Identity" and node.domain in ("", "ai.onnx") and node.inputs:
            return self.value(node.inputs[0])
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
            attr = node.attributes.get("value")
            if attr is not None and attr.type == ir.AttributeType.TENSOR:
                return _digest("const", self.hasher.content(attr.value))
        if node.op_type == "ConstantOfShape" and node.domain in ("", "ai.onnx"):
            fill = _constant_of_shape(node, self._fed)
            if fill is not None:
                return _digest("const", fill)
        return _digest(self.node(node), node.outputs.index(value) if value in node.outputs else -1)

    def _fed(self, value: ir.Value) -> bool:
        return self.fed is None or value.name in self.fed

    def node(self, node: ir.Node) -> str:
        key = id(node)
        found = self.memo.get(key)
        if found is not None:
            return found
        self.keep.append(node)
        domain = node.domain or ""
        opset = node.version or self.opsets.get(domain, self.opsets.get("ai.onnx", 0))
        version = _since_version(node.op_type, domain, int(opset or 0))
        attrs = sorted((name, self.attribute(attr)) for name, attr in node.attributes.items())
        inputs = [self.value(v) for v in node.inputs]
        result = _digest(node.op_type, domain, node.overload, version, attrs, inputs)
        self.memo[key] = result
        return result

    def attribute(self, attr: Any) -> Any:
        if attr.is_ref():
            return ("ref", attr.ref_attr_name)
        if attr.type == ir.AttributeType.GRAPH:
            return ("graph", self.graph(attr.as_graph()))
        if attr.type == ir.AttributeType.GRAPHS:
            return ("graphs", [self.graph(g) for g in attr.as_graphs()])
        if attr.type == ir.AttributeType.TENSOR:
            return ("tensor", self.hasher.content(attr.value))
        if attr.type == ir.AttributeType.TENSORS:
            return ("tensors", [self.hasher.content(t) for t in attr.value])
        return (str(attr.type), repr(attr.value))

    def graph(self, graph: ir.Graph) -> str:
        # a body's inputs are its interface (Loop/Scan feed them by position and type)
        inputs = [_digest("subgraph-input", i, _annotation(v)) for i, v in enumerate(graph.inputs)]
        for value, digest in zip(graph.inputs, inputs, strict=True):
            self.keep.append(value)
            self.memo[id(value)] = digest
        self.warm(graph)
        return _digest("graph", [self.value(v) for v in graph.outputs])

    def warm(self, graph: ir.Graph) -> None:
        """Hash the nodes in graph order, so that hashing an output recurses only one step.

        Hashing from the outputs alone recurses once per node on the longest path: a deep
        quantized graph (Q/DQ pairs double the depth) exceeded Python's recursion limit.
        Graphs are kept topologically sorted, so every producer is memoized before its
        consumers; a node out of order only costs recursion, not a wrong hash.
        """
        for node in graph:
            self.node(node)


def computation_fingerprint(
    model: ir.Model, hasher: TensorHasher | None = None, fed: frozenset[str] | None = None
) -> str:
    """Hash of what the graph outputs compute (see the module docstring).

    ``fed``: the names of the graph inputs the caller's runs feed (None: all). An input with a
    default value (an initializer) that is not fed computes with that default, so it is hashed
    as the constant: turning it into a plain initializer (``inputs_to_initializers`` on IR < 4
    models) is then proven equal for those runs without running them.
    """
    merkle = _Merkle(model, hasher or TensorHasher(), fed)
    merkle.warm(model.graph)
    outputs = [(v.name, _annotation(v), merkle.value(v)) for v in model.graph.outputs]
    inputs = [
        (v.name, _annotation(v))
        for v in model.graph.inputs
        if v.const_value is None or merkle._fed(v)
    ]
    functions = sorted((key, _function_digest(fn, merkle)) for key, fn in model.functions.items())
    return _digest(inputs, outputs, functions)


def _function_digest(function: ir.Function, merkle: _Merkle) -> str:
    return _digest(
        [(n.op_type, n.domain, sorted(n.attributes)) for n in function],
        [merkle.attribute(a) for a in function.attributes.values()]
        if hasattr(function, "attributes")
        else [],
    )
