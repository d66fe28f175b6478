"""Structural diff of two ONNX graphs: which nodes were added, removed or changed.

:func:`diff_models` matches the nodes of graph A to the nodes of graph B and describes every
difference as data (:class:`GraphDiff`, JSON-ready through :meth:`GraphDiff.to_dict`).

Matching runs in phases, each only over nodes still unmatched, cheapest and most certain first;
every pair records the phase that found it (``method``) so a reader can judge it:

1. ``name``: equal, unique, non-empty node names.
2. ``outputs``: same op type and an equal output tensor name (exporters keep tensor names when
   node names are empty, e.g. the light model zoo).
3. ``structure``: propagation from matched anchors (graph inputs and outputs by name, matched
   nodes): the producers of matched inputs and the consumers of matched outputs pair up when
   their op types agree; *transparent* nodes present on only one side (QuantizeLinear,
   DequantizeLinear, Cast, Identity, BatchNormalization) are walked through, so a Conv still
   matches its counterpart after Q/DQ insertion or BN folding. Ties are broken by a
   similarity score (matched neighbours, Weisfeiler-Lehman neighbourhood hash, weight shapes,
   attributes).
4. ``neighbourhood``: a unique Weisfeiler-Lehman hash of the op-type neighbourhood (networkx)
   among the unmatched nodes of each side.
5. ``order`` (only with ``order_fallback=True``): remaining nodes of the same op type and
   output types aligned by topological order (difflib). Off by default: on real optimizer
   output (light-zoo Inception/DenseNet after BN folding) it pairs a removed node with an
   unrelated new one of the same shape, and such pairs then look like numeric divergence.

A matched pair lists its changes: op type, attributes, input/output shapes and dtypes, weight
shapes (pruned channels), weight dtypes and quantization (an input that now comes through a
DequantizeLinear), and weight values when both are small enough to compare. The diff also
carries the op-histogram delta, the cost delta (params, bytes, MACs through
:mod:`irpass.analysis.cost` when present), I/O signature changes, opset changes, and the
*changed regions*: small merged subgraphs around the changes for the HTML report to draw.
"""

from __future__ import annotations

import collections
import dataclasses
import difflib
import logging
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import networkx as nx
import numpy as np
import onnx_ir as ir

__all__ = [
    "Change",
    "GraphDiff",
    "IOChange",
    "NodeInfo",
    "NodeMatch",
    "TensorInfo",
    "WeightInfo",
    "diff_models",
    "model_summary_cost",
    "shapes_agree",
]

logger = logging.getLogger(__name__)

#: Ops that a pass inserts or removes around a node without changing what the node computes;
#: structural matching walks through them when they exist on one side only.
TRANSPARENT_OPS = frozenset(
    {"QuantizeLinear", "DequantizeLinear", "Cast", "Identity", "BatchNormalization"}
)
#: Ops that only produce constants; they are left out of the context drawn around changes.
CONSTANT_OPS = frozenset({"Constant", "ConstantOfShape"})
#: Weights above this many elements are not compared value by value.
VALUE_COMPARE_LIMIT = 4_000_000


# ----------------------------------------------------------------------------- data classes


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    """Name, dtype and shape of a value (``None`` where unknown)."""

    name: str
    dtype: str | None
    shape: tuple[int | str | None, ...] | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "name": self.name,
            "dtype": self.dtype,
            "shape": list(self.shape) if self.shape is not None else None,
        }

    def type_text(self) -> str:
        """``float32[1,3,224,224]``-style text."""
        return f"{self.dtype or '?'}{_fmt_shape(self.shape)}"


@dataclasses.dataclass(frozen=True)
class WeightInfo:
    """A constant input of a node, traced through Constant/ConstantOfShape/DequantizeLinear/Cast.

    ``source`` says where the constant comes from: ``initializer``, ``constant`` (a Constant
    node or folded value), ``constant_of_shape``; ``via`` lists the ops walked through
    (e.g. ``["DequantizeLinear"]`` for a quantized weight).
    """

    name: str
    dtype: str | None
    shape: tuple[int, ...] | None
    source: str
    via: tuple[str, ...] = ()

    @property
    def size(self) -> int:
        """Number of elements (0 when the shape is unknown)."""
        return int(np.prod(self.shape)) if self.shape is not None else 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "name": self.name,
            "dtype": self.dtype,
            "shape": list(self.shape) if self.shape is not None else None,
            "source": self.source,
            "via": list(self.via),
        }

    def type_text(self) -> str:
        """``int8[64,3,7,7] via DequantizeLinear``-style text."""
        dims = "?" if self.shape is None else ",".join(str(d) for d in self.shape)
        text = f"{self.dtype or '?'}[{dims}]"
        return text + (f" via {'+'.join(self.via)}" if self.via else "")


@dataclasses.dataclass
class NodeInfo:
    """What the diff knows about one node of one side (a plain snapshot, no IR references)."""

    side: str
    index: int
    name: str
    op_type: str
    domain: str
    attributes: dict[str, Any]
    inputs: list[TensorInfo | None]
    outputs: list[TensorInfo]
    weights: dict[int, WeightInfo]

    @property
    def key(self) -> str:
        """Stable identifier within a diff: ``A12`` is node 12 of graph A."""
        return f"{self.side}{self.index}"

    @property
    def label(self) -> str:
        """Name, or op type and first output when the node is unnamed."""
        if self.name:
            return self.name
        return f"{self.op_type}->{self.outputs[0].name}" if self.outputs else self.op_type

    @property
    def is_constant(self) -> bool:
        """True for nodes that only produce constants (Constant, ConstantOfShape)."""
        return self.op_type in CONSTANT_OPS

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "key": self.key,
            "index": self.index,
            "name": self.name,
            "label": self.label,
            "op_type": self.op_type,
            "domain": self.domain,
            "attributes": self.attributes,
            "inputs": [t.to_dict() if t is not None else None for t in self.inputs],
            "outputs": [t.to_dict() for t in self.outputs],
            "weights": {str(k): w.to_dict() for k, w in sorted(self.weights.items())},
        }


@dataclasses.dataclass(frozen=True)
class Change:
    """One difference of a matched node pair.

    ``kind`` is one of ``op_type``, ``attribute``, ``input``, ``output``, ``input_shape``,
    ``output_shape``, ``dtype``, ``weight_shape``, ``weight_dtype``, ``quantized``,
    ``weight_values``.
    """

    kind: str
    field: str
    before: Any
    after: Any
    text: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return dataclasses.asdict(self)


@dataclasses.dataclass
class NodeMatch:
    """A node of A paired with a node of B, how the pair was found and what differs."""

    a: NodeInfo
    b: NodeInfo
    method: str
    changes: list[Change] = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (node snapshots are given by key; full nodes live in ``nodes``)."""
        return {
            "a": self.a.key,
            "b": self.b.key,
            "a_label": self.a.label,
            "b_label": self.b.label,
            "op_type": self.b.op_type,
            "method": self.method,
            "changes": [c.to_dict() for c in self.changes],
        }


@dataclasses.dataclass(frozen=True)
class IOChange:
    """A change of the model's input/output signature."""

    kind: str  # "input" | "output"
    change: str  # "added" | "removed" | "changed"
    name: str
    before: str | None
    after: str | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return dataclasses.asdict(self)


@dataclasses.dataclass
class GraphDiff:
    """The result of :func:`diff_models`."""

    a_label: str
    b_label: str
    matches: list[NodeMatch]
    removed: list[NodeInfo]
    added: list[NodeInfo]
    io_changes: list[IOChange]
    opset_changes: dict[str, tuple[int | None, int | None]]
    cost_a: dict[str, Any]
    cost_b: dict[str, Any]
    regions: list[dict[str, Any]]
    nodes_a: list[NodeInfo]
    nodes_b: list[NodeInfo]
    regions_omitted: int = 0

    @property
    def changed(self) -> list[NodeMatch]:
        """Matched pairs with at least one change."""
        return [m for m in self.matches if m.changes]

    @property
    def is_identical(self) -> bool:
        """True when nothing structural differs."""
        return not (self.changed or self.added or self.removed or self.io_changes
                    or self.opset_changes)

    def match_for_a(self) -> dict[str, NodeMatch]:
        """Return the matches keyed by the A node's key."""
        return {m.a.key: m for m in self.matches}

    def op_delta(self) -> dict[str, tuple[int, int]]:
        """``{op: (count in A, count in B)}`` for every op whose count differs."""
        ops_a = collections.Counter(n.op_type for n in self.nodes_a)
        ops_b = collections.Counter(n.op_type for n in self.nodes_b)
        return {
            op: (ops_a.get(op, 0), ops_b.get(op, 0))
            for op in sorted(set(ops_a) | set(ops_b))
            if ops_a.get(op, 0) != ops_b.get(op, 0)
        }

    def summary(self) -> dict[str, int]:
        """Count nodes in A/B, matched, changed, added, removed, and matches per method."""
        methods = collections.Counter(m.method for m in self.matches)
        return {
            "nodes_a": len(self.nodes_a),
            "nodes_b": len(self.nodes_b),
            "matched": len(self.matches),
            "changed": len(self.changed),
            "added": len(self.added),
            "removed": len(self.removed),
            **{f"matched_by_{k}": v for k, v in sorted(methods.items())},
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form; the HTML report and ``irpass diff --json`` use this."""
        cost_delta = {
            k: self.cost_b[k] - self.cost_a[k]
            for k in self.cost_a
            if isinstance(self.cost_a.get(k), (int, float))
            and isinstance(self.cost_b.get(k), (int, float))
        }
        return {
            "a": self.a_label,
            "b": self.b_label,
            "identical": self.is_identical,
            "summary": self.summary(),
            "op_delta": {op: {"a": a, "b": b, "delta": b - a} for op, (a, b) in
                         self.op_delta().items()},
            "cost": {"a": self.cost_a, "b": self.cost_b, "delta": cost_delta},
            "io_changes": [c.to_dict() for c in self.io_changes],
            "opset_changes": {d: {"a": a, "b": b} for d, (a, b) in self.opset_changes.items()},
            "changed": [m.to_dict() for m in self.changed],
            "added": [n.to_dict() for n in self.added],
            "removed": [n.to_dict() for n in self.removed],
            "matches": [
                {"a": m.a.key, "b": m.b.key, "method": m.method} for m in self.matches
            ],
            "regions": self.regions,
            "regions_omitted": self.regions_omitted,
        }


# ----------------------------------------------------------------------------- snapshots


def _dtype_name(dtype: ir.DataType | None) -> str | None:
    if dtype is None:
        return None
    try:
        return ir.DataType(dtype).name.lower()
    except ValueError:
        return str(dtype)


def _shape_tuple(shape: ir.Shape | None) -> tuple[int | str | None, ...] | None:
    if shape is None:
        return None
    dims: list[int | str | None] = []
    for dim in shape:
        if isinstance(dim, int):
            dims.append(dim)
        else:
            dims.append(dim.value if getattr(dim, "value", None) is not None else None)
    return tuple(dims)


def _tensor_info(value: ir.Value | None) -> TensorInfo | None:
    if value is None:
        return None
    dtype = value.dtype
    shape = _shape_tuple(value.shape)
    if value.const_value is not None:
        dtype = dtype or value.const_value.dtype
        shape = shape or _static(value.const_value.shape)
    return TensorInfo(value.name or "", _dtype_name(dtype), shape)


def _static(shape: Any) -> tuple[int, ...]:
    """Dims of a tensor's (static) shape as ints; a symbolic dim, which tensors lack, is -1."""
    return tuple(d if isinstance(d, int) else -1 for d in shape)


def _constant_of_shape(node: ir.Node) -> tuple[tuple[int, ...] | None, str | None]:
    shape: tuple[int, ...] | None = None
    if node.inputs and node.inputs[0] is not None and node.inputs[0].const_value is not None:
        shape = tuple(int(d) for d in node.inputs[0].const_value.numpy().reshape(-1))
    fill = node.attributes.get("value")
    dtype = _dtype_name(fill.as_tensor().dtype) if fill is not None else "float"
    return shape, dtype


def _weight_info(value: ir.Value | None, via: tuple[str, ...] = ()) -> WeightInfo | None:
    """Trace ``value`` back to a constant; None when it is computed from graph inputs."""
    if value is None:
        return None
    producer = value.producer()
    if value.const_value is not None and (value.is_initializer() or producer is None
                                          or producer.op_type == "Constant"):
        tensor = value.const_value
        source = "initializer" if value.is_initializer() else "constant"
        return WeightInfo(value.name or "", _dtype_name(tensor.dtype), _static(tensor.shape),
                          source, via)
    if producer is None:
        return None
    if producer.op_type == "Constant" and producer.domain in ("", "ai.onnx"):
        attr = producer.attributes.get("value")
        if attr is not None and attr.type == ir.AttributeType.TENSOR:
            tensor = attr.as_tensor()
            return WeightInfo(value.name or "", _dtype_name(tensor.dtype), _static(tensor.shape),
                              "constant", via)
        return WeightInfo(value.name or "", _dtype_name(value.dtype), None, "constant", via)
    if producer.op_type == "ConstantOfShape":
        shape, dtype = _constant_of_shape(producer)
        return WeightInfo(value.name or "", dtype, shape, "constant_of_shape", via)
    if producer.op_type in _WEIGHT_PASS_THROUGH and len(via) < 4:
        inner = _weight_info(producer.inputs[0] if producer.inputs else None,
                             via + (producer.op_type,))
        if inner is not None:
            # the consumer sees this value's shape; the stored dtype stays the inner one
            seen = _shape_tuple(value.shape)
            if seen is not None and all(isinstance(d, int) for d in seen):
                inner = dataclasses.replace(inner, shape=tuple(int(d or 0) for d in seen))
            return inner
    return None


#: Ops through which a constant stays a weight (quantized storage, casts, layout changes).
_WEIGHT_PASS_THROUGH = frozenset({"DequantizeLinear", "Cast", "Identity", "Unsqueeze", "Squeeze",
                                  "Reshape", "Flatten", "Transpose"})


def _graph_summary(graph: ir.Graph) -> str:
    """``<graph: 3 nodes: Abs, Identity x2>``: subgraph bodies are compared by op counts."""
    ops = collections.Counter(n.op_type for n in graph)
    listed = ", ".join(op if k == 1 else f"{op} x{k}" for op, k in sorted(ops.items()))
    return f"<graph: {len(graph)} nodes: {listed}>" if ops else "<graph: 0 nodes>"


def _attribute_value(attr: ir.Attr) -> Any:
    kind = attr.type
    if kind == ir.AttributeType.GRAPH:
        return _graph_summary(attr.as_graph())
    if kind == ir.AttributeType.GRAPHS:
        return [_graph_summary(g) for g in attr.as_graphs()]
    if kind == ir.AttributeType.TENSOR:
        tensor = attr.as_tensor()
        shape = _static(tensor.shape)
        if int(np.prod(shape)) <= 16:
            try:
                return {"tensor": _dtype_name(tensor.dtype), "shape": list(shape),
                        "values": np.asarray(tensor.numpy()).reshape(-1).tolist()}
            except Exception:  # noqa: BLE001 - summaries must not fail on exotic dtypes
                pass
        return {"tensor": _dtype_name(tensor.dtype), "shape": list(shape)}
    if kind in (ir.AttributeType.TENSORS, ir.AttributeType.SPARSE_TENSOR,
                ir.AttributeType.SPARSE_TENSORS, ir.AttributeType.TYPE_PROTO,
                ir.AttributeType.TYPE_PROTOS):
        return f"<{kind.name.lower()}>"
    value = attr.value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, float):
        return float(value)
    return value


def _snapshot(side: str, nodes: Sequence[ir.Node]) -> list[NodeInfo]:
    infos = []
    for index, node in enumerate(nodes):
        weights = {}
        for slot, value in enumerate(node.inputs):
            weight = _weight_info(value)
            if weight is not None:
                weights[slot] = weight
        infos.append(
            NodeInfo(
                side=side,
                index=index,
                name=node.name or "",
                op_type=node.op_type,
                domain=node.domain or "",
                attributes={k: _attribute_value(a) for k, a in sorted(node.attributes.items())},
                inputs=[_tensor_info(v) for v in node.inputs],
                outputs=[_tensor_info(v) or TensorInfo("", None, None) for v in node.outputs],
                weights=weights,
            )
        )
    return infos


# ----------------------------------------------------------------------------- graph view


class _Side:
    """One graph prepared for matching: topological node list, producer/consumer maps."""

    def __init__(self, side: str, graph: ir.Graph) -> None:
        self.graph = graph
        self.nodes: list[ir.Node] = _topological(graph)
        self.index = {id(n): i for i, n in enumerate(self.nodes)}
        self.infos = _snapshot(side, self.nodes)
        self.digraph = nx.DiGraph()
        self.digraph.add_nodes_from(range(len(self.nodes)))
        for i, node in enumerate(self.nodes):
            for value in node.inputs:
                producer = value.producer() if value is not None else None
                if producer is not None and id(producer) in self.index:
                    self.digraph.add_edge(self.index[id(producer)], i)
        self.inputs = {v.name: v for v in graph.inputs if v.name}
        self.outputs = [v for v in graph.outputs]

    def node_of(self, node: ir.Node | None) -> int | None:
        return self.index.get(id(node)) if node is not None else None

    def producer(self, value: ir.Value | None) -> int | None:
        return self.node_of(value.producer()) if value is not None else None

    def consumers(self, value: ir.Value | None) -> list[tuple[int, int]]:
        if value is None:
            return []
        out = []
        for use in value.uses():
            i = self.node_of(use.node)
            if i is not None:
                out.append((i, use.idx))
        return sorted(set(out))


def _topological(graph: ir.Graph) -> list[ir.Node]:
    nodes = list(graph)
    position = {id(n): i for i, n in enumerate(nodes)}
    dg = nx.DiGraph()
    dg.add_nodes_from(range(len(nodes)))
    for i, node in enumerate(nodes):
        for value in node.inputs:
            producer = value.producer() if value is not None else None
            if producer is not None and id(producer) in position:
                dg.add_edge(position[id(producer)], i)
    try:
        order = list(nx.lexicographical_topological_sort(dg))
    except nx.NetworkXUnfeasible:
        logger.debug("graph %r has a cycle; keeping file order", graph.name)
        order = list(range(len(nodes)))
    return [nodes[i] for i in order]


def _wl_hashes(side: _Side, iterations: int = 3) -> list[str]:
    """Weisfeiler-Lehman hash of each node's op-type neighbourhood (direction-aware)."""
    dg = side.digraph.copy()
    for i, info in enumerate(side.infos):
        dg.nodes[i]["label"] = f"{info.domain}:{info.op_type}"
    with warnings.catch_warnings():
        # networkx >= 3.5 warns that directed hashes changed; we only compare within one run
        warnings.simplefilter("ignore", UserWarning)
        hashes = nx.weisfeiler_lehman_subgraph_hashes(dg, node_attr="label",
                                                      iterations=iterations)
    return [hashes[i][-1] if hashes[i] else side.infos[i].op_type for i in range(len(side.infos))]


# ----------------------------------------------------------------------------- matching


def _order_key_of(info: NodeInfo) -> str:
    outputs = ";".join(t.type_text() for t in info.outputs)
    return f"{info.domain}:{info.op_type}:{outputs}"


class _Matcher:
    def __init__(self, a: _Side, b: _Side) -> None:
        self.a = a
        self.b = b
        self.a_to_b: dict[int, int] = {}
        self.b_to_a: dict[int, int] = {}
        self.method: dict[int, str] = {}
        self.wl_a = _wl_hashes(a)
        self.wl_b = _wl_hashes(b)

    def pair(self, i: int, j: int, method: str) -> bool:
        if i in self.a_to_b or j in self.b_to_a:
            return False
        self.a_to_b[i] = j
        self.b_to_a[j] = i
        self.method[i] = method
        return True

    def free_a(self) -> list[int]:
        return [i for i in range(len(self.a.nodes)) if i not in self.a_to_b]

    def free_b(self) -> list[int]:
        return [j for j in range(len(self.b.nodes)) if j not in self.b_to_a]

    # -- phases

    def by_name(self) -> None:
        names_a = collections.Counter(n.name for n in self.a.nodes if n.name)
        names_b = collections.Counter(n.name for n in self.b.nodes if n.name)
        index_b = {n.name: j for j, n in enumerate(self.b.nodes) if n.name}
        for i, node in enumerate(self.a.nodes):
            if node.name and names_a[node.name] == 1 and names_b.get(node.name) == 1:
                self.pair(i, index_b[node.name], "name")

    def by_outputs(self) -> None:
        index_b: dict[tuple[str, str], list[int]] = collections.defaultdict(list)
        for j, node in enumerate(self.b.nodes):
            if j in self.b_to_a:
                continue
            for value in node.outputs:
                if value.name:
                    index_b[(node.op_type, value.name)].append(j)
        for i, node in enumerate(self.a.nodes):
            if i in self.a_to_b:
                continue
            for value in node.outputs:
                candidates = index_b.get((node.op_type, value.name or ""), [])
                if len(candidates) == 1 and self.pair(i, candidates[0], "outputs"):
                    break

    def score(self, i: int, j: int) -> float:
        ia, jb = self.a.infos[i], self.b.infos[j]
        score = 0.0
        preds = [(self.a_to_b.get(p), p) for p in self.a.digraph.predecessors(i)]
        succs = [(self.a_to_b.get(s), s) for s in self.a.digraph.successors(i)]
        b_preds = set(self.b.digraph.predecessors(j))
        b_succs = set(self.b.digraph.successors(j))
        score += 2.0 * sum(1 for m, _ in preds if m is not None and m in b_preds)
        score += 2.0 * sum(1 for m, _ in succs if m is not None and m in b_succs)
        if self.wl_a[i] == self.wl_b[j]:
            score += 1.5
        shapes_a = sorted(str(w.shape) for w in ia.weights.values())
        shapes_b = sorted(str(w.shape) for w in jb.weights.values())
        if shapes_a == shapes_b:
            score += 3.0
        else:
            # pruning changes channel counts, never kernel sizes: compare dims from 2 on
            kernels_a = sorted(str((w.shape or ())[2:]) for w in ia.weights.values())
            kernels_b = sorted(str((w.shape or ())[2:]) for w in jb.weights.values())
            score += 1.5 if kernels_a == kernels_b else 0.0
        if len(ia.outputs) == len(jb.outputs) and all(
                shapes_agree(x.shape, y.shape) for x, y in zip(ia.outputs, jb.outputs,
                                                               strict=True)):
            score += 2.0
        if ia.attributes == jb.attributes:
            score += 1.0
        if ia.name and ia.name == jb.name:
            score += 1.0
        # prefer pairs at a similar relative depth in the graph
        pos_a = i / max(1, len(self.a.nodes))
        pos_b = j / max(1, len(self.b.nodes))
        return score - abs(pos_a - pos_b)

    def _assign(self, cand_a: Iterable[int], cand_b: Iterable[int]) -> list[tuple[int, int]]:
        """Pair free candidates of equal op type, best score first."""
        by_op_a: dict[tuple[str, str], list[int]] = collections.defaultdict(list)
        by_op_b: dict[tuple[str, str], list[int]] = collections.defaultdict(list)
        for i in dict.fromkeys(cand_a):
            if i not in self.a_to_b:
                info = self.a.infos[i]
                by_op_a[(info.domain, info.op_type)].append(i)
        for j in dict.fromkeys(cand_b):
            if j not in self.b_to_a:
                info = self.b.infos[j]
                by_op_b[(info.domain, info.op_type)].append(j)
        pairs = []
        for op, group_a in by_op_a.items():
            group_b = by_op_b.get(op)
            if not group_b:
                continue
            if len(group_a) == 1 and len(group_b) == 1:
                pairs.append((group_a[0], group_b[0]))
                continue
            scored = sorted(
                ((self.score(i, j), i, j) for i in group_a for j in group_b),
                key=lambda t: (-t[0], t[1], t[2]),
            )
            used_a: set[int] = set()
            used_b: set[int] = set()
            for _, i, j in scored:
                if i not in used_a and j not in used_b:
                    used_a.add(i)
                    used_b.add(j)
                    pairs.append((i, j))
        return pairs

    def _walk_producers(
        self, side: _Side, value: ir.Value | None, free: dict[int, int]
    ) -> list[int]:
        """Free producer of ``value``, then producers reached through free transparent nodes."""
        out: list[int] = []
        for _ in range(4):
            p = side.producer(value)
            if p is None or p in free:
                break
            out.append(p)
            node = side.nodes[p]
            if node.op_type not in TRANSPARENT_OPS or not node.inputs:
                break
            value = node.inputs[0]
        return out

    def _walk_consumers(self, side: _Side, value: ir.Value | None, free: dict[int, int],
                        depth: int = 0) -> list[int]:
        out: list[int] = []
        for c, _slot in side.consumers(value):
            if c in free:
                continue
            out.append(c)
            node = side.nodes[c]
            if node.op_type in TRANSPARENT_OPS and node.outputs and depth < 3:
                out.extend(self._walk_consumers(side, node.outputs[0], free, depth + 1))
        return out

    def propagate(self, seeds: Iterable[tuple[ir.Value | None, ir.Value | None]] = ()) -> None:
        """Pair producers/consumers of already-paired values until nothing new pairs."""
        queue: collections.deque[tuple[ir.Value | None, ir.Value | None]] = collections.deque(seeds)
        for i, j in list(self.a_to_b.items()):
            queue.extend(self._value_pairs(i, j))
        seen: set[tuple[int, int]] = set()
        while queue:
            va, vb = queue.popleft()
            if va is None or vb is None:
                continue
            key = (id(va), id(vb))
            if key in seen:
                continue
            seen.add(key)
            prods = self._assign(self._walk_producers(self.a, va, self.a_to_b),
                                 self._walk_producers(self.b, vb, self.b_to_a))
            cons = self._assign(self._walk_consumers(self.a, va, self.a_to_b),
                                self._walk_consumers(self.b, vb, self.b_to_a))
            for i, j in prods + cons:
                if self.pair(i, j, "structure"):
                    queue.extend(self._value_pairs(i, j))

    def _value_pairs(self, i: int, j: int) -> list[tuple[ir.Value | None, ir.Value | None]]:
        na, nb = self.a.nodes[i], self.b.nodes[j]
        pairs: list[tuple[ir.Value | None, ir.Value | None]] = list(
            zip(na.outputs, nb.outputs, strict=False))
        ins_a = [v for v in na.inputs if v is not None and _weight_info(v) is None]
        ins_b = [v for v in nb.inputs if v is not None and _weight_info(v) is None]
        if len(ins_a) == len(ins_b):
            pairs += list(zip(ins_a, ins_b, strict=False))
        return pairs

    def anchors(self) -> list[tuple[ir.Value | None, ir.Value | None]]:
        seeds: list[tuple[ir.Value | None, ir.Value | None]] = []
        for name, value in self.a.inputs.items():
            if name in self.b.inputs:
                seeds.append((value, self.b.inputs[name]))
        outs_b = {v.name: v for v in self.b.outputs if v.name}
        for k, value in enumerate(self.a.outputs):
            if value.name in outs_b:
                seeds.append((value, outs_b[value.name]))
            elif len(self.a.outputs) == len(self.b.outputs):
                seeds.append((value, self.b.outputs[k]))
        return seeds

    def by_neighbourhood(self) -> None:
        groups_a: dict[str, list[int]] = collections.defaultdict(list)
        groups_b: dict[str, list[int]] = collections.defaultdict(list)
        for i in self.free_a():
            groups_a[self.wl_a[i]].append(i)
        for j in self.free_b():
            groups_b[self.wl_b[j]].append(j)
        for h, group in groups_a.items():
            if len(group) == 1 and len(groups_b.get(h, ())) == 1:
                self.pair(group[0], groups_b[h][0], "neighbourhood")

    def by_order(self) -> None:
        free_a, free_b = self.free_a(), self.free_b()
        # the last resort is conservative: op type *and* output types must agree, so a node
        # removed here and a similar one created elsewhere are not paired
        keys_a = [_order_key_of(self.a.infos[i]) for i in free_a]
        keys_b = [_order_key_of(self.b.infos[j]) for j in free_b]
        matcher = difflib.SequenceMatcher(a=keys_a, b=keys_b, autojunk=False)
        for tag, a0, a1, b0, b1 in matcher.get_opcodes():
            if tag == "equal":
                for i, j in zip(free_a[a0:a1], free_b[b0:b1], strict=False):
                    self.pair(i, j, "order")

    def run(self, order_fallback: bool) -> None:
        self.by_name()
        self.by_outputs()
        self.propagate(self.anchors())
        self.by_neighbourhood()
        self.propagate()
        if order_fallback:
            self.by_order()
            self.propagate()


# ----------------------------------------------------------------------------- changes


def shapes_agree(
    a: Sequence[int | str | None] | None, b: Sequence[int | str | None] | None
) -> bool:
    """True unless two shapes are known to differ.

    Unknown shapes agree with anything; two symbolic dims agree whatever their names, because
    shape inference invents fresh names (``unk__214`` / ``unk__3``) on every run; a static dim
    against a symbolic one (e.g. a batch size fixed to 1) differs.
    """
    if a is None or b is None:
        return True
    if len(a) != len(b):
        return False
    for x, y in zip(a, b, strict=True):
        if isinstance(x, int) or isinstance(y, int):
            if x != y:
                return False
    return True


def _fmt_shape(shape: Sequence[Any] | None) -> str:
    if shape is None:
        return "[?]"
    return "[" + ",".join("?" if d is None else str(d) for d in shape) + "]"


def _weights_differ(va: ir.Value | None, vb: ir.Value | None) -> bool | None:
    """True/False when both are comparable constants of equal shape; None when unknown."""
    if va is None or vb is None or va.const_value is None or vb.const_value is None:
        return None
    ta, tb = va.const_value, vb.const_value
    if ta is tb:
        return False
    if ta.dtype != tb.dtype or tuple(ta.shape) != tuple(tb.shape):
        return None
    if int(np.prod(_static(ta.shape))) > VALUE_COMPARE_LIMIT:
        return None
    try:
        return not np.array_equal(ta.numpy(), tb.numpy())
    except Exception:  # noqa: BLE001 - unreadable external data is "unknown", not an error
        return None


def _node_changes(na: ir.Node, nb: ir.Node, ia: NodeInfo, ib: NodeInfo,
                  compare_values: bool) -> list[Change]:
    changes: list[Change] = []
    if (ia.domain, ia.op_type) != (ib.domain, ib.op_type):
        changes.append(Change("op_type", "op_type", ia.op_type, ib.op_type,
                              f"op {ia.op_type} -> {ib.op_type}"))
    for key in sorted(set(ia.attributes) | set(ib.attributes)):
        before, after = ia.attributes.get(key), ib.attributes.get(key)
        if before != after:
            if key not in ia.attributes:
                text = f"attribute {key} added: {after}"
            elif key not in ib.attributes:
                text = f"attribute {key} removed (was {before})"
            else:
                text = f"attribute {key}: {before} -> {after}"
            changes.append(Change("attribute", key, before, after, text))
    for slot in range(max(len(ia.inputs), len(ib.inputs))):
        ta = ia.inputs[slot] if slot < len(ia.inputs) else None
        tb = ib.inputs[slot] if slot < len(ib.inputs) else None
        wa, wb = ia.weights.get(slot), ib.weights.get(slot)
        field = f"input {slot}"
        if (ta is None) != (tb is None):
            present = (wb or tb) if ta is None else (wa or ta)
            kind = "weight" if (wb if ta is None else wa) is not None else "tensor"
            assert present is not None
            changes.append(Change("input", field, ta.type_text() if ta else None,
                                  tb.type_text() if tb else None,
                                  f"{field} {'added' if ta is None else 'removed'} "
                                  f"({kind} {present.type_text()})"))
            continue
        if ta is None or tb is None:
            continue
        if wa is not None and wb is not None:
            if wa.shape != wb.shape:
                changes.append(Change("weight_shape", field, list(wa.shape or ()),
                                      list(wb.shape or ()),
                                      f"weight {field} {_fmt_shape(wa.shape)} -> "
                                      f"{_fmt_shape(wb.shape)}"))
            dq_a, dq_b = "DequantizeLinear" in wa.via, "DequantizeLinear" in wb.via
            if wa.dtype != wb.dtype or dq_a != dq_b:
                quantized = dq_b and not dq_a
                changes.append(Change("quantized" if quantized else "weight_dtype", field,
                                      wa.type_text(), wb.type_text(),
                                      f"weight {field} {wa.type_text()} -> {wb.type_text()}"))
            elif compare_values and wa.shape == wb.shape:
                differ = _weights_differ(na.inputs[slot], nb.inputs[slot])
                if differ:
                    changes.append(Change("weight_values", field, wa.name, wb.name,
                                          f"weight {field} values changed"))
            continue
        if (wa is None) != (wb is None):
            info = wa or wb
            assert info is not None
            changes.append(Change("input", field, wa.type_text() if wa else ta.type_text(),
                                  wb.type_text() if wb else tb.type_text(),
                                  f"{field} became {'a constant' if wb else 'computed'}"))
            continue
        in_a, in_b = na.inputs[slot], nb.inputs[slot]
        prod_a = in_a.producer() if in_a is not None else None
        prod_b = in_b.producer() if in_b is not None else None
        dq_a = prod_a is not None and prod_a.op_type == "DequantizeLinear"
        dq_b = prod_b is not None and prod_b.op_type == "DequantizeLinear"
        if dq_a != dq_b:
            changes.append(Change("quantized", field, "float" if not dq_a else "QDQ",
                                  "QDQ" if dq_b else "float",
                                  f"{field} {'now' if dq_b else 'no longer'} passes through "
                                  f"QuantizeLinear/DequantizeLinear"))
        if ta.dtype != tb.dtype and ta.dtype and tb.dtype:
            changes.append(Change("dtype", field, ta.dtype, tb.dtype,
                                  f"{field} dtype {ta.dtype} -> {tb.dtype}"))
        if not shapes_agree(ta.shape, tb.shape):
            changes.append(Change("input_shape", field, list(ta.shape or ()), list(tb.shape or ()),
                                  f"{field} shape {_fmt_shape(ta.shape)} -> "
                                  f"{_fmt_shape(tb.shape)}"))
    for slot in range(max(len(ia.outputs), len(ib.outputs))):
        field = f"output {slot}"
        if slot >= len(ia.outputs) or slot >= len(ib.outputs):
            changes.append(Change("output", field, slot < len(ia.outputs), slot < len(ib.outputs),
                                  f"{field} {'added' if slot >= len(ia.outputs) else 'removed'}"))
            continue
        ta, tb = ia.outputs[slot], ib.outputs[slot]
        if ta.dtype != tb.dtype and ta.dtype and tb.dtype:
            changes.append(Change("dtype", field, ta.dtype, tb.dtype,
                                  f"{field} dtype {ta.dtype} -> {tb.dtype}"))
        if not shapes_agree(ta.shape, tb.shape):
            changes.append(Change("output_shape", field, list(ta.shape or ()), list(tb.shape or ()),
                                  f"{field} shape {_fmt_shape(ta.shape)} -> "
                                  f"{_fmt_shape(tb.shape)}"))
    return changes


# ----------------------------------------------------------------------------- signature, cost


def _signature(values: Sequence[ir.Value]) -> dict[str, str]:
    return {v.name or f"#{k}": (_tensor_info(v) or TensorInfo("", None, None)).type_text()
            for k, v in enumerate(values)}


def _io_changes(a: ir.Graph, b: ir.Graph) -> list[IOChange]:
    changes = []
    for kind, sig_a, sig_b in (
        ("input", _signature([v for v in a.inputs if not v.is_initializer()]),
         _signature([v for v in b.inputs if not v.is_initializer()])),
        ("output", _signature(a.outputs), _signature(b.outputs)),
    ):
        for name in list(sig_a) + [n for n in sig_b if n not in sig_a]:
            before, after = sig_a.get(name), sig_b.get(name)
            if before == after:
                continue
            change = "added" if before is None else "removed" if after is None else "changed"
            changes.append(IOChange(kind, change, name, before, after))
    return changes


def _typed_values(model: ir.Model) -> dict[str, tuple[Any, Any]]:
    """Map every named value to (shape, dtype), the form ``irpass.analysis.cost`` consumes."""
    out: dict[str, tuple[Any, Any]] = {}
    for graph in model.graphs():
        for value in list(graph.inputs) + list(graph.initializers.values()):
            if value.name:
                out[value.name] = (value.shape, value.dtype)
        for node in graph:
            for value in node.outputs:
                if value.name:
                    out[value.name] = (value.shape, value.dtype)
    return out


def model_summary_cost(model: ir.Model, inferred: ir.Model | None = None) -> dict[str, Any]:
    """Cost of a model as a dict: through ``irpass.analysis.cost.model_cost`` when available.

    ``inferred`` is a shape-inferred copy of ``model`` whose value types are reused instead of
    running shape inference again. Without the cost module the fallback counts nodes, ops,
    and params/bytes of initializers and Constant/ConstantOfShape weights (no MACs).
    """
    try:
        from irpass.analysis import cost as cost_module
    except ImportError:
        cost_module = None  # type: ignore[assignment]
    if cost_module is not None:
        try:
            values = _typed_values(inferred) if inferred is not None else None
            cost = cost_module.model_cost(model, values)
            # totals and op histogram; per-layer rows would make a diff as large as the model
            data = dict(cost.summary())
            data["unknown_macs_nodes"] = cost.unknown_macs_nodes
            return data
        except Exception as exc:  # noqa: BLE001 - a diff is still useful without costs
            logger.warning("cost analysis failed (%s); using initializer counts", exc)
    params = 0
    weight_bytes = 0
    seen: set[int] = set()
    for value in model.graph.initializers.values():
        tensor = value.const_value
        if tensor is not None and id(tensor) not in seen:
            seen.add(id(tensor))
            params += int(np.prod(_static(tensor.shape)))
            weight_bytes += int(tensor.nbytes)
    for node in model.graph:
        if node.op_type in CONSTANT_OPS and node.outputs:
            weight = _weight_info(node.outputs[0])
            if weight is not None and weight.shape is not None:
                size = weight.size
                params += size
                itemsize = _itemsize(weight.dtype)
                weight_bytes += size * itemsize
    ops = collections.Counter(n.op_type for n in model.graph)
    return {"nodes": len(model.graph), "params": params, "weight_bytes": weight_bytes,
            "macs": None, "ops": dict(sorted(ops.items()))}


def _itemsize(dtype: str | None) -> int:
    if dtype is None:
        return 4
    try:
        return max(1, int(ir.DataType[dtype.upper()].itemsize))
    except (KeyError, AttributeError, TypeError):
        return 4


# ----------------------------------------------------------------------------- regions


def _regions(
    matcher: _Matcher,
    changed: set[int],
    max_nodes: int,
    max_regions: int,
) -> tuple[list[dict[str, Any]], int]:
    """Build merged subgraphs around changes: changed/added/removed nodes, one hop of context.

    A connected change larger than ``max_nodes`` is cut into parts in topological order.
    Returns at most ``max_regions`` regions and how many were left out.
    """
    a, b = matcher.a, matcher.b
    union = nx.DiGraph()

    def uid_a(i: int) -> str:
        return f"M{i}" if i in matcher.a_to_b else f"A{i}"

    def uid_b(j: int) -> str:
        return f"M{matcher.b_to_a[j]}" if j in matcher.b_to_a else f"B{j}"

    for i, info in enumerate(a.infos):
        if i in matcher.a_to_b:
            j = matcher.a_to_b[i]
            status = "changed" if i in changed else "unchanged"
            union.add_node(uid_a(i), info=b.infos[j], status=status, order=(i, j),
                           a=info.key, b=b.infos[j].key)
        else:
            union.add_node(uid_a(i), info=info, status="removed", order=(i, -1), a=info.key, b=None)
    for j, info in enumerate(b.infos):
        if j not in matcher.b_to_a:
            union.add_node(uid_b(j), info=info, status="added", order=(-1, j), a=None, b=info.key)
    for p, c in a.digraph.edges:
        union.add_edge(uid_a(p), uid_a(c), side="a")
    for p, c in b.digraph.edges:
        u, v = uid_b(p), uid_b(c)
        if union.has_edge(u, v):
            union.edges[u, v]["side"] = "both"
        else:
            union.add_edge(u, v, side="b")

    # constant producers that appear or vanish (constant folding) are listed in the tables;
    # drawing them would bury the compute nodes that changed
    interesting = [n for n, d in union.nodes(data=True)
                   if d["status"] != "unchanged" and not d["info"].is_constant]
    if not interesting:
        return [], 0
    keep = set(interesting)
    for n in interesting:
        for m in list(union.predecessors(n)) + list(union.successors(n)):
            if not union.nodes[m]["info"].is_constant:
                keep.add(m)
    sub = union.subgraph(keep)
    components = sorted(
        (sorted(c, key=lambda n: _order_key(union.nodes[n]["order"]))
         for c in nx.weakly_connected_components(sub)),
        key=lambda c: _order_key(union.nodes[c[0]]["order"]),
    )
    pieces: list[tuple[list[str], int, int, int]] = []
    for component in components:
        chunks = [component[k:k + max_nodes] for k in range(0, len(component), max_nodes)]
        for k, chunk in enumerate(chunks):
            pieces.append((chunk, k + 1, len(chunks), len(component)))
    regions = []
    for members, part, parts, component_size in pieces[:max_regions]:
        member_set = set(members)
        nodes = []
        for n in members:
            data = union.nodes[n]
            shown: NodeInfo = data["info"]
            nodes.append({
                "id": n,
                "op_type": shown.op_type,
                "label": shown.label,
                "status": data["status"],
                "a": data["a"],
                "b": data["b"],
            })
        edges = [
            {"from": u, "to": v, "side": union.edges[u, v]["side"]}
            for u, v in union.edges
            if u in member_set and v in member_set
        ]
        regions.append({"nodes": nodes, "edges": edges, "size": len(members),
                        "part": part, "parts": parts, "component_size": component_size})
    return regions, max(0, len(pieces) - max_regions)


def _order_key(order: tuple[int, int]) -> tuple[int, int]:
    i, j = order
    return (i if i >= 0 else j, j)


# ----------------------------------------------------------------------------- entry point


def _prepare(model: ir.Model, infer_shapes: bool) -> ir.Model:
    """Return a shallow copy (tensors shared) with inferred shapes; the caller's model is kept."""
    if not infer_shapes:
        return model
    from onnx_ir.passes.common import ShapeInferencePass

    copy = model.clone()
    try:
        ShapeInferencePass(check_type=False, strict_mode=False, data_prop=True)(copy)
    except Exception as exc:  # noqa: BLE001 - shapes are a bonus, the diff works without them
        logger.debug("shape inference failed: %s", exc)
    return copy


def diff_models(
    a: ir.Model,
    b: ir.Model,
    *,
    a_label: str = "A",
    b_label: str = "B",
    infer_shapes: bool = True,
    compare_values: bool = True,
    with_cost: bool = True,
    max_region_nodes: int = 60,
    max_regions: int = 12,
    order_fallback: bool = False,
) -> GraphDiff:
    """Match the main-graph nodes of ``a`` and ``b`` and describe every difference.

    Neither model is modified (shape inference runs on shallow copies). ``compare_values``
    also flags weights of equal shape whose values differ (up to
    :data:`VALUE_COMPARE_LIMIT` elements each). ``order_fallback`` adds the low-confidence
    ``order`` phase (see the module docstring). Subgraph bodies are summarised as attributes
    (node counts), not matched node by node.
    """
    pa, pb = _prepare(a, infer_shapes), _prepare(b, infer_shapes)
    cost_a = model_summary_cost(a, pa if infer_shapes else None) if with_cost else {}
    cost_b = model_summary_cost(b, pb if infer_shapes else None) if with_cost else {}
    side_a, side_b = _Side("A", pa.graph), _Side("B", pb.graph)
    matcher = _Matcher(side_a, side_b)
    matcher.run(order_fallback)

    matches: list[NodeMatch] = []
    changed: set[int] = set()
    for i, j in sorted(matcher.a_to_b.items()):
        changes = _node_changes(side_a.nodes[i], side_b.nodes[j], side_a.infos[i],
                                side_b.infos[j], compare_values)
        if changes:
            changed.add(i)
        matches.append(NodeMatch(side_a.infos[i], side_b.infos[j], matcher.method[i], changes))
    removed = [side_a.infos[i] for i in matcher.free_a()]
    added = [side_b.infos[j] for j in matcher.free_b()]

    opsets: dict[str, tuple[int | None, int | None]] = {}
    for domain in sorted(set(a.opset_imports) | set(b.opset_imports)):
        va, vb = a.opset_imports.get(domain), b.opset_imports.get(domain)
        if va != vb:
            opsets[domain or "ai.onnx"] = (va, vb)

    regions, omitted = _regions(matcher, changed, max_region_nodes, max_regions)
    return GraphDiff(
        a_label=a_label,
        b_label=b_label,
        matches=matches,
        removed=removed,
        added=added,
        io_changes=_io_changes(pa.graph, pb.graph),
        opset_changes=opsets,
        cost_a=cost_a,
        cost_b=cost_b,
        regions=regions,
        nodes_a=side_a.infos,
        nodes_b=side_b.infos,
        regions_omitted=omitted,
    )

