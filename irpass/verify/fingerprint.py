"""Cheap fingerprints: did a pass change the model, and did it change what it computes.

- :func:`structure_fingerprint` captures everything a pass can change (opsets, signature,
  initializers, nodes with attributes, names and value annotations, functions, subgraphs) by
  object identity, since passes rewrite the IR in place.
  The manager takes it before and after every pass: a pass that changed the model but reported
  ``modified=False`` is caught and verified anyway, instead of a later innocent pass getting the
  blame.
- :func:`computation_fingerprint` hashes *what the graph outputs compute* (a Merkle hash over the
  graph: each value's hash is its op, domain, the operator's resolved schema version,
  attributes, annotations and the hashes of its inputs; weights by content). Value names, node
  order, dead code, Identity nodes and duplicated or deduplicated computations do not enter it.
  Two models with equal computation fingerprints compute the same function bit for bit, so a
  pass that only removed dead code, deduplicated weights or merged equal nodes is proven equal
  without running it.

Tensor contents are hashed once per tensor object (a :class:`TensorHasher` keeps the hashes;
a strided sample of each tensor is re-read every time so that a tensor mutated in place is
hashed again).
"""

from __future__ import annotations

import functools
import hashlib
from typing import Any

import numpy as np
import onnx
import onnx_ir as ir

__all__ = ["TensorHasher", "computation_fingerprint", "structure_fingerprint"]

_SAMPLES = 64


def _digest(*parts: Any) -> str:
    h = hashlib.blake2b(digest_size=16)
    for part in parts:
        h.update(repr(part).encode())
        h.update(b"\x00")
    return h.hexdigest()


class TensorHasher:
    """Content hashes of tensors, computed once per tensor object and kept while it lives."""

    def __init__(self) -> None:
        self._cache: dict[int, tuple[Any, np.ndarray, str]] = {}
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

    def content(self, tensor: ir.TensorProtocol) -> str:
        """A hash of dtype, shape and every byte of ``tensor``."""
        key = id(tensor)
        self._seen.add(key)
        array = self._array(tensor)
        cached = self._cache.get(key)
        if cached is not None and cached[0] is tensor:
            # the same tensor object: rehash only if a strided sample shows in-place changes
            if array is None or np.array_equal(
                cached[1], self._sample(array), equal_nan=array.dtype.kind in "fc"
            ):
                return cached[2]
        if array is None:
            full = _digest("opaque", str(tensor.dtype), tuple(tensor.shape.numpy()), id(tensor))
            sample = np.zeros(0)
        else:
            h = hashlib.blake2b(digest_size=16)
            h.update(f"{array.dtype.str}{array.shape}".encode())
            if array.dtype.kind == "O":
                h.update(repr(array.tolist()).encode())
            else:  # bytes of any dtype, bfloat16 / float8 (ml_dtypes) included
                h.update(array.reshape(-1).view(np.uint8).data)
            full = h.hexdigest()
            sample = self._sample(array)
        self._cache[key] = (tensor, sample, full)
        return full

    def prune(self) -> None:
        """Forget tensors not hashed since the last prune (lets replaced weights be freed)."""
        self._cache = {k: v for k, v in self._cache.items() if k in self._seen}
        self._seen = set()


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


class _Merkle:
    def __init__(self, model: ir.Model, hasher: TensorHasher) -> None:
        self.opsets = dict(model.opset_imports)
        self.hasher = hasher
        self.memo: dict[int, str] = {}
        self.keep: list[ir.Value] = []  # keeps memo keys alive while hashing

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
            if not value.is_graph_input():  # an overridable initializer stays an input
                return _digest("const", self.hasher.content(tensor), _annotation(value))
        node = value.producer()
        if node is None:
            return _digest("input", value.name, _annotation(value))
        if node.op_type == "Identity" and node.domain in ("", "ai.onnx") and node.inputs:
            return self.value(node.inputs[0])
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
            attr = node.attributes.get("value")
            if attr is not None and attr.type == ir.AttributeType.TENSOR:
                return _digest("const", self.hasher.content(attr.value), _annotation(value))
        return _digest(
            self.node(node), node.outputs.index(value) if value in node.outputs else -1,
            _annotation(value),
        )

    def node(self, node: ir.Node) -> str:
        key = id(node)
        found = self.memo.get(key)
        if found is not None:
            return found
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
        inputs = [_digest("subgraph-input", i, _annotation(v)) for i, v in enumerate(graph.inputs)]
        for value, digest in zip(graph.inputs, inputs, strict=True):
            self.keep.append(value)
            self.memo[id(value)] = digest
        return _digest("graph", [self.value(v) for v in graph.outputs])


def computation_fingerprint(model: ir.Model, hasher: TensorHasher | None = None) -> str:
    """Hash of what the graph outputs compute (see the module docstring)."""
    merkle = _Merkle(model, hasher or TensorHasher())
    outputs = [(v.name, merkle.value(v)) for v in model.graph.outputs]
    inputs = [(v.name, _annotation(v)) for v in model.graph.inputs]
    functions = sorted(
        (key, _function_digest(fn, merkle)) for key, fn in model.functions.items()
    )
    return _digest(inputs, outputs, functions)


def _function_digest(function: ir.Function, merkle: _Merkle) -> str:
    return _digest(
        [(n.op_type, n.domain, sorted(n.attributes)) for n in function],
        [merkle.attribute(a) for a in function.attributes.values()]
        if hasattr(function, "attributes")
        else [],
    )


def structure_fingerprint(model: ir.Model, hasher: TensorHasher | None = None) -> str:
    """Identity of everything in the model a pass can change, compared within one run.

    The IR is rewritten in place, so object identities tell what changed: a node that was
    replaced, rewired, given other attributes or outputs; a value renamed or re-annotated
    (another shape or type, compared by content); an initializer holding another tensor (or a
    tensor whose strided sample changed in place, through ``hasher``); opsets, signature and
    functions. Cheap: no serialization.
    """
    hasher = hasher or TensorHasher()
    parts: list[Any] = [model.ir_version, sorted(model.opset_imports.items())]

    def value_part(value: ir.Value | None) -> Any:
        if value is None:
            return None
        # Annotations by content: constant folding and the rewriter re-annotate values with new
        # but equal Shape objects, which is no change (by identity, a fixpoint never settles).
        shape = None if value.shape is None else str(value.shape)
        return (id(value), value.name, shape, str(value.type))

    def graph_parts(graph: ir.Graph) -> None:
        parts.append([value_part(v) for v in graph.inputs])
        parts.append([value_part(v) for v in graph.outputs])
        for name, value in graph.initializers.items():
            tensor = value.const_value
            parts.append((name, value_part(value), hasher.content(tensor) if tensor else None))
        for node in graph:
            parts.append(
                (
                    id(node),
                    node.op_type,
                    node.domain,
                    node.overload,
                    node.version,
                    [(name, id(attr)) for name, attr in node.attributes.items()],
                    [value_part(v) for v in node.inputs],
                    [value_part(v) for v in node.outputs],
                )
            )
            for attr in node.attributes.values():
                if attr.type == ir.AttributeType.GRAPH:
                    graph_parts(attr.as_graph())
                elif attr.type == ir.AttributeType.GRAPHS:
                    for sub in attr.as_graphs():
                        graph_parts(sub)
                elif attr.type == ir.AttributeType.TENSOR:
                    parts.append(hasher.content(attr.value))

    graph_parts(model.graph)
    for key, function in sorted(model.functions.items()):
        parts.append((key, id(function), [id(n) for n in function]))
    return hashlib.blake2b(repr(parts).encode(), digest_size=16).hexdigest()
