"""The diff's data model: node snapshots, changes, matches and the :class:`GraphDiff` result.

Plain dataclasses without IR references, each JSON-ready through ``to_dict()``.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "CONSTANT_OPS",
    "TRANSPARENT_OPS",
    "VALUE_COMPARE_LIMIT",
    "Change",
    "GraphDiff",
    "IOChange",
    "NodeInfo",
    "NodeMatch",
    "TensorInfo",
    "WeightInfo",
    "fmt_shape",
    "shapes_agree",
]

#: Ops that a pass inserts or removes around a node without changing what the node computes;
#: structural matching walks through them when they exist on one side only.
TRANSPARENT_OPS = frozenset(
    {"QuantizeLinear", "DequantizeLinear", "Cast", "Identity", "BatchNormalization"}
)
#: Ops that only produce constants; they are left out of the context drawn around changes.
CONSTANT_OPS = frozenset({"Constant", "ConstantOfShape"})
#: Weights above this many elements are not compared value by value.
VALUE_COMPARE_LIMIT = 4_000_000


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
        return f"{self.dtype or '?'}{fmt_shape(self.shape)}"


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


def fmt_shape(shape: Sequence[Any] | None) -> str:
    """``[1,3,?,?]``-style text (``[?]`` when the rank is unknown)."""
    if shape is None:
        return "[?]"
    return "[" + ",".join("?" if d is None else str(d) for d in shape) + "]"
