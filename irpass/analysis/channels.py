"""Channel dependency analysis: which channels of an ONNX graph must be pruned together.

Removing output channel 7 of a Conv deletes row 7 of its weight, entry 7 of its bias and of the
BatchNormalization after it, input channel 7 of every consumer, and, through a residual Add,
channel 7 of every tensor added to it. :func:`analyze_channels` finds these couplings on the
ONNX graph itself (onnx-ir), without the framework that produced it.

How it works. Every tensor axis that carries channels gets an array of *element ids*, one per
position. Fresh ids are created on the axes of constants (a weight's output and input axes,
a bias, norm parameters) and carried through every op by a rule that knows its index map
(``irpass.analysis.channel_rules``)::

    Conv            y[:, m] <- W[m];  W[:, c] == x[:, c]        (grouped / depthwise: see rules)
    Concat          y = [x1 | x2]                                (offsets)
    Split / Slice   y_k = x[a:b]                                 (ranges)
    Flatten -> Gemm y[c*S + s] <- x[c]                           (a channel expands to its block)
    Add / Mul ...   x1[c] == x2[c]                               (broadcasting operands couple)
    Transpose       the channel axis moves;  Relu, pools, Resize, Pad, Clip ... pass through

``==`` is a union of element ids (union-find). A *class* of united ids is one pruning unit:
removing it deletes every position that holds one of its ids, in every tensor, so the graph
stays consistent. Id ranges created together (a *space*) that are linked by unions form a
:class:`ChannelGroup`; the dependency graph over spaces is a networkx graph whose edges name
the nodes that couple them.

Frozen channels (never pruned), each with the reason recorded (a group may be frozen in part:
a Concat of a graph input and a Conv output keeps the input's channels and may prune the
Conv's):

- an axis whose size cannot change takes part: a graph input or output, the output of an op
  without a channel rule, a value captured by an If/Loop/Scan body;
- an op reads or mixes channels in a way its rule does not model (Softmax or a reduction over
  channels, LRN, a Reshape whose target is computed at run time, a strided channel Slice, ...);
- a node the user asked to ignore touches it.

Unknown ops never guess: every mapped input axis an op's rule does not consume is frozen.
Subgraphs (If/Loop/Scan bodies) are analysed on their own; nothing is propagated across the
boundary (captured values and the node's inputs are frozen).
"""

from __future__ import annotations

import collections
import dataclasses
import fnmatch
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import networkx as nx
import numpy as np
import onnx_ir as ir

from irpass.analysis import channel_rules
from irpass.analysis.shapes import ValueInfo, inferred_values

__all__ = [
    "ChannelAnalysis",
    "ChannelGroup",
    "TensorAxis",
    "analyze_channels",
    "constant_array",
    "node_label",
]

logger = logging.getLogger(__name__)

#: Bound on re-running a graph's rules until no new channel maps appear.
_MAX_ROUNDS = 8


def node_label(node: ir.Node) -> str:
    """``OpType name`` of a node, as reports show it."""
    return f"{node.op_type} {node.name or '<unnamed>'}"


def constant_array(value: ir.Value | None) -> np.ndarray | None:
    """The contents of a constant that surgery can rewrite, else None.

    Constants are initializers (not graph inputs), outputs of Constant nodes and outputs of
    ConstantOfShape with a constant shape (how old exporters write weights).
    """
    if value is None or value.is_graph_input():
        return None
    tensor = value.const_value
    if tensor is None:
        producer = value.producer()
        if producer is None or producer.domain not in ("", "ai.onnx"):
            return None
        if producer.op_type == "ConstantOfShape":
            return _constant_of_shape(producer)
        if producer.op_type != "Constant":
            return None
        try:
            tensor = ir.convenience.get_const_tensor(value)
        except ValueError:
            return None
        if tensor is None:
            return None
    try:
        return np.asarray(tensor.numpy())
    except Exception:  # unreadable external data, string tensors
        return None


def _constant_of_shape(node: ir.Node) -> np.ndarray | None:
    shape = constant_array(node.inputs[0] if node.inputs else None)
    if shape is None:
        return None
    attr = node.attributes.get("value")
    fill = np.zeros(1, np.float32) if attr is None else np.asarray(attr.as_tensor().numpy())
    dims = tuple(int(d) for d in shape.reshape(-1))
    return np.full(dims, fill.reshape(-1)[0], dtype=fill.dtype)


@dataclasses.dataclass(frozen=True)
class TensorAxis:
    """One channel-carrying axis of one tensor, and the class of each of its positions.

    Attributes:
        value: The tensor (an activation or a constant).
        axis: The axis, counted from the end (negative), so that broadcasting keeps it.
        classes: For every position along the axis, the index of its class in the group
            (``0 .. group.channels - 1``); positions of one class are removed together.
        roles: ``(node label, role)`` pairs: how nodes use this axis (``weight_out``,
            ``weight_in``, ``bias``, ``norm_scale``, ``norm_param``, ``act_in``, ...).
    """

    value: ir.Value
    axis: int
    classes: np.ndarray
    roles: frozenset[tuple[str, str]]

    @property
    def is_constant(self) -> bool:
        """Whether the tensor is a constant (surgery rewrites its contents)."""
        return constant_array(self.value) is not None

    def has_role(self, *roles: str) -> bool:
        """Whether any node uses this axis in one of ``roles``."""
        return any(role in roles for _, role in self.roles)

    def nodes_with_role(self, role: str) -> list[str]:
        """Labels of the nodes that use this axis as ``role``."""
        return sorted(label for label, r in self.roles if r == role)


@dataclasses.dataclass
class ChannelGroup:
    """Coupled channels: a set of tensor axes whose positions are removed class by class.

    Attributes:
        id: Index of the group in the analysis (stable for a given model).
        channels: Number of classes (prunable units); a class may span several positions of
            one axis (grouped convolutions remove a channel from every group at once).
        axes: Every tensor axis in the group with its position -> class map.
        nodes: Labels of the nodes that read or write these axes.
        frozen: Why some or all of its classes must stay (empty when none must).
        frozen_classes: For every class, whether it must stay. A Concat of a graph input and
            a Conv output is one group in which the input's channels are frozen and the
            Conv's are not.
    """

    id: int
    channels: int
    axes: list[TensorAxis]
    nodes: list[str]
    frozen: list[str]
    frozen_classes: np.ndarray

    @property
    def free_channels(self) -> int:
        """Number of classes that may be removed."""
        return int((~self.frozen_classes).sum())

    @property
    def fully_frozen(self) -> bool:
        """Whether no class of the group may be removed."""
        return self.free_channels == 0

    @property
    def prunable(self) -> bool:
        """Whether the group may lose channels (a free class, and one class would remain)."""
        return self.free_channels >= 1 and self.channels >= 2

    def axes_with_role(self, *roles: str) -> list[TensorAxis]:
        """The group's axes that some node uses in one of ``roles``."""
        return [a for a in self.axes if a.has_role(*roles)]

    def summary(self) -> dict[str, Any]:
        """JSON-ready description (what ``irpass inspect --groups`` prints)."""
        return {
            "id": self.id,
            "channels": self.channels,
            "frozen_channels": self.channels - self.free_channels,
            "prunable": self.prunable,
            "frozen": list(self.frozen),
            "nodes": list(self.nodes),
            "tensors": [
                {"name": a.value.name, "axis": a.axis, "size": int(a.classes.size)}
                for a in self.axes
            ],
        }


@dataclasses.dataclass
class ChannelAnalysis:
    """Result of :func:`analyze_channels`: the groups and the dependency graph behind them.

    ``graph`` has one node per space (``space:<id>``, with attributes ``tensor``, ``axis``,
    ``size``, ``frozen``) and an edge for every coupling, labelled with the coupling nodes.
    """

    groups: list[ChannelGroup]
    graph: nx.Graph

    def prunable(self) -> list[ChannelGroup]:
        """Groups that may lose channels."""
        return [g for g in self.groups if g.prunable]

    def frozen(self) -> list[ChannelGroup]:
        """Groups that must keep all their channels."""
        return [g for g in self.groups if g.fully_frozen]

    def group_of(self, name: str, axis: int) -> ChannelGroup | None:
        """The group holding tensor ``name``'s ``axis`` (counted from the end), if any."""
        for group in self.groups:
            if any(a.value.name == name and a.axis == axis for a in group.axes):
                return group
        return None


@dataclasses.dataclass
class _Space:
    start: int
    size: int
    value: ir.Value
    axis: int
    frozen: str | None


class _Builder:
    """Builds the element maps of one model; implements ``channel_rules.Context``."""

    def __init__(self, model: ir.Model, *, attention: bool, ignore: Sequence[str]) -> None:
        self.model = model
        self.attention = attention
        self.ignore = list(ignore)
        self.opset = int(model.opset_imports.get("", model.opset_imports.get("ai.onnx", 1)))
        self.info: dict[str, ValueInfo] = inferred_values(model)
        self.parent: list[int] = []
        self.elem_space: list[int] = []
        self.spaces: list[_Space] = []
        self.maps: dict[ir.Value, dict[int, np.ndarray]] = {}
        self.fixed: dict[tuple[ir.Value, int], np.ndarray] = {}
        self.freezes: list[tuple[np.ndarray, str]] = []
        self.roles: dict[tuple[ir.Value, int], set[tuple[str, str]]] = collections.defaultdict(set)
        self.touched: dict[tuple[ir.Value, int], set[str]] = collections.defaultdict(set)
        self.edges: dict[tuple[int, int], set[str]] = collections.defaultdict(set)
        self.graph: ir.Graph = model.graph
        self.node: ir.Node | None = None
        self.consumed: set[tuple[ir.Value, int]] = set()
        self.new_maps = 0

    # -- union-find ---------------------------------------------------------------------
    def _new_space(self, value: ir.Value, axis: int, size: int, frozen: str | None) -> np.ndarray:
        start = len(self.parent)
        self.parent.extend(range(start, start + size))
        self.elem_space.extend([len(self.spaces)] * size)
        self.spaces.append(_Space(start, size, value, axis, frozen))
        return np.arange(start, start + size, dtype=np.int64)

    def find(self, element: int) -> int:
        """The representative of ``element``'s class."""
        parent = self.parent
        while parent[element] != element:
            parent[element] = parent[parent[element]]
            element = parent[element]
        return element

    def roots(self, elements: np.ndarray) -> np.ndarray:
        """Class representatives of an array of element ids."""
        return np.fromiter(
            (self.find(int(e)) for e in elements.reshape(-1)), np.int64, count=elements.size
        ).reshape(elements.shape)

    def union(self, a: np.ndarray, b: np.ndarray) -> None:
        """Couple ``a[i]`` with ``b[i]`` for every position ``i``."""
        if a is b:
            return
        if a.shape != b.shape:  # a rule paired axes of different sizes: keep both intact
            reason = f"channel maps of sizes {a.size} and {b.size} cannot be paired"
            self.freeze(a, reason)
            self.freeze(b, reason)
            return
        label = node_label(self.node) if self.node is not None else "graph"
        pairs: set[tuple[int, int]] = set()
        for x, y in zip(a.tolist(), b.tolist(), strict=True):
            rx, ry = self.find(x), self.find(y)
            if rx != ry:
                self.parent[max(rx, ry)] = min(rx, ry)
            sx, sy = self.elem_space[x], self.elem_space[y]
            if sx != sy:
                pairs.add((min(sx, sy), max(sx, sy)))
        for pair in pairs:
            self.edges[pair].add(label)

    # -- shapes -------------------------------------------------------------------------
    def dims(self, value: ir.Value | None) -> list[int | str | None] | None:
        """The value's dims (ints, symbols or None), from the value or shape inference."""
        if value is None:
            return None
        array = constant_array(value)
        if array is not None:
            return list(array.shape)
        shape = value.shape
        inferred = self.info.get(value.name or "", (None, None))[0]
        if shape is None or (inferred is not None and _unknowns(shape) > _unknowns(inferred)):
            shape = inferred if inferred is not None else shape
        if shape is None:
            return None
        return [d if isinstance(d, int) else (d.value if d.value else None) for d in shape]

    def rank(self, value: ir.Value | None) -> int | None:
        """The value's rank when known."""
        dims = self.dims(value)
        return None if dims is None else len(dims)

    def dim(self, value: ir.Value | None, axis: int) -> int | None:
        """Length along negative ``axis``: 1 when the axis is absent (broadcast), None unknown."""
        if value is None:
            return None
        existing = self.maps.get(value, {}).get(axis)
        if existing is not None:
            return int(existing.size)
        dims = self.dims(value)
        if dims is None:
            return None
        if -axis > len(dims):
            return 1
        size = dims[axis]
        return size if isinstance(size, int) else None

    # -- maps ---------------------------------------------------------------------------
    def in_scope(self, value: ir.Value) -> bool:
        """Whether ``value`` belongs to the graph being analysed (not captured from outside)."""
        return value.graph is self.graph

    def _touch(self, value: ir.Value, axis: int) -> None:
        if self.node is not None:
            self.touched[(value, axis)].add(node_label(self.node))
            self.consumed.add((value, axis))

    def map(self, value: ir.Value | None, axis: int) -> np.ndarray | None:
        """The element ids along ``axis`` of ``value``, if it carries channels there."""
        if value is None or not self.in_scope(value):
            return None
        found = self.maps.get(value, {}).get(axis)
        if found is not None:
            self._touch(value, axis)
        return found

    def all_maps(self, value: ir.Value | None) -> dict[int, np.ndarray]:
        """Every channel map of ``value`` (axis -> element ids)."""
        if value is None or not self.in_scope(value):
            return {}
        found = dict(self.maps.get(value, {}))
        for axis in found:
            self._touch(value, axis)
        return found

    def set(self, value: ir.Value, axis: int, elements: np.ndarray) -> None:
        """Give ``value`` a channel map on ``axis`` (coupled with any map it already has)."""
        per_value = self.maps.setdefault(value, {})
        existing = per_value.get(axis)
        if existing is None:
            per_value[axis] = elements
            self.new_maps += 1
        elif existing is not elements:
            self.union(existing, elements)
        self._touch(value, axis)

    def demand(self, value: ir.Value | None, axis: int) -> np.ndarray | None:
        """The map of ``value`` on ``axis``, created when ``value`` is constant-derived.

        Constants get fresh ids; values computed from a constant by a shape-only op
        (Unsqueeze, Reshape, Transpose, Cast, Slice, ...) get them through that op.
        """
        if value is None or not self.in_scope(value):
            return None
        found = self.map(value, axis)
        if found is not None:
            return found
        array = constant_array(value)
        if array is not None:
            if -axis > array.ndim or array.shape[axis] < 1:
                return None
            elements = self._new_space(value, axis, int(array.shape[axis]), None)
            self.set(value, axis, elements)
            return elements
        producer = value.producer()
        if producer is None or producer.domain not in ("", "ai.onnx"):
            return None
        inverse = channel_rules.INVERSE.get(producer.op_type)
        source = inverse(self, producer, axis) if inverse is not None else None
        if source is None or self.demand(source[0], source[1]) is None:
            return None
        self._apply(producer)
        return self.map(value, axis)

    def need(self, value: ir.Value | None, axis: int, size: int) -> np.ndarray:
        """The map of ``value`` on ``axis``, or a frozen placeholder when its size is fixed."""
        if value is None:
            raise ValueError("a rule asked for the channels of a missing input")
        found = self.demand(value, axis)
        if found is not None and found.size == size:
            return found
        key = (value, axis)
        if found is not None:  # the graph disagrees with itself about this axis' size
            self.freeze(
                found, f"{value.name!r} axis {axis} has {found.size} channels, {size} expected"
            )
        if key not in self.fixed:
            self.fixed[key] = self._new_space(value, axis, size, self._why_fixed(value))
        self._touch(value, axis)
        return self.fixed[key]

    def _why_fixed(self, value: ir.Value) -> str:
        if value.is_graph_input():
            return f"graph input {value.name!r} has a fixed channel count"
        if not self.in_scope(value):
            return f"{value.name!r} comes from an enclosing graph (subgraph boundary)"
        producer = value.producer()
        if producer is None:
            return f"{value.name!r} has no producer the analysis understands"
        return f"{value.name!r} comes from {node_label(producer)}, whose output channels are fixed"

    def freeze(self, elements: np.ndarray, reason: str) -> None:
        """Never prune the classes of ``elements``."""
        if elements.size:
            self.freezes.append((elements, reason))

    def freeze_value(self, value: ir.Value | None, reason: str) -> None:
        """Freeze every channel map of ``value``."""
        for elements in self.all_maps(value).values():
            self.freeze(elements, reason)

    def role(self, value: ir.Value | None, axis: int, role: str) -> None:
        """Record that the current node uses ``value``'s ``axis`` as ``role``."""
        if value is not None and self.node is not None:
            self.roles[(value, axis)].add((node_label(self.node), role))

    def const(self, value: ir.Value | None) -> np.ndarray | None:
        """Contents of a constant input (shapes, starts, axes, scales)."""
        return constant_array(value)

    # -- traversal ----------------------------------------------------------------------
    def _ignored(self, node: ir.Node) -> bool:
        return any(
            fnmatch.fnmatchcase(node.name or "", pattern) or node.op_type == pattern
            for pattern in self.ignore
        )

    def _apply(self, node: ir.Node) -> None:
        saved = (self.node, self.consumed)
        self.node, self.consumed = node, set()
        try:
            rule = channel_rules.RULES.get(node.op_type) if node.domain in ("", "ai.onnx") else None
            if rule is None:
                channel_rules.unknown(self, node)
            else:
                rule(self, node)
            label = node_label(node)
            for index, value in enumerate(node.inputs):
                for axis, elements in self.all_maps_unconsumed(value).items():
                    self.freeze(
                        elements,
                        f"{label} does not carry channels of its input {index} on axis {axis}",
                    )
            if self._ignored(node):
                for value in list(node.inputs) + list(node.outputs):
                    self.freeze_value(value, f"{label} is ignored by the user")
        finally:
            self.node, self.consumed = saved

    def all_maps_unconsumed(self, value: ir.Value | None) -> dict[int, np.ndarray]:
        """Maps of ``value`` the current node's rule did not read."""
        if value is None or not self.in_scope(value):
            return {}
        return {
            axis: elements
            for axis, elements in self.maps.get(value, {}).items()
            if (value, axis) not in self.consumed
        }

    def run_graph(self, graph: ir.Graph) -> None:
        """Propagate channel maps through ``graph`` until nothing new appears."""
        self.graph = graph
        nodes = list(graph)
        for _ in range(_MAX_ROUNDS):
            before = self.new_maps
            for node in nodes:
                self._apply(node)
            if self.new_maps == before:
                break
        else:
            raise RuntimeError(f"channel analysis of graph {graph.name!r} did not converge")
        for value in graph.outputs:
            self.freeze_value(value, f"graph output {value.name!r} keeps its channels")
        for value, per_axis in list(self.maps.items()):
            if not self.in_scope(value):
                continue
            outside = [user for user, _ in value.uses() if user.graph is not graph]
            if outside:
                for elements in per_axis.values():
                    self.freeze(
                        elements,
                        f"{value.name!r} is read inside a subgraph (by {node_label(outside[0])})",
                    )

    # -- result -------------------------------------------------------------------------
    def finish(self) -> ChannelAnalysis:
        """Group spaces into :class:`ChannelGroup` objects and build the networkx graph."""
        graph = nx.Graph()
        for index, space in enumerate(self.spaces):
            graph.add_node(
                f"space:{index}",
                tensor=space.value.name,
                axis=space.axis,
                size=space.size,
                frozen=space.frozen,
            )
        for (a, b), labels in self.edges.items():
            graph.add_edge(f"space:{a}", f"space:{b}", nodes=sorted(labels))
        root = np.array([self.find(e) for e in range(len(self.parent))], dtype=np.int64)
        frozen_roots: dict[int, list[str]] = collections.defaultdict(list)
        for space in self.spaces:
            if space.frozen:
                for r in np.unique(root[space.start : space.start + space.size]):
                    frozen_roots[int(r)].append(space.frozen)
        for elements, reason in self.freezes:
            for r in np.unique(root[elements]):
                frozen_roots[int(r)].append(reason)
        groups: list[ChannelGroup] = []
        space_ids = {f"space:{i}": i for i in range(len(self.spaces))}
        mapped: dict[int, list[tuple[ir.Value, int, np.ndarray]]] = collections.defaultdict(list)
        element_component: dict[int, int] = {}
        components = sorted(
            (sorted(space_ids[n] for n in comp) for comp in nx.connected_components(graph)),
            key=lambda c: c[0],
        )
        for number, comp in enumerate(components):
            for space_index in comp:
                space = self.spaces[space_index]
                for r in np.unique(root[space.start : space.start + space.size]):
                    element_component[int(r)] = number
        for value, per_axis in self.maps.items():
            for axis, elements in per_axis.items():
                if elements.size:
                    number = element_component[int(root[elements[0]])]
                    mapped[number].append((value, axis, elements))
        for number in range(len(components)):
            entries = mapped.get(number, [])
            if not entries:
                continue  # only frozen placeholders: nothing that surgery could change
            comp_roots = sorted({int(r) for _, _, el in entries for r in np.unique(root[el])})
            index_of = {r: i for i, r in enumerate(comp_roots)}
            reasons = [reason for r in comp_roots for reason in frozen_roots.get(r, [])]
            axes = [
                TensorAxis(
                    value=value,
                    axis=axis,
                    classes=np.array([index_of[int(r)] for r in root[elements]], dtype=np.int64),
                    roles=frozenset(self.roles.get((value, axis), set())),
                )
                for value, axis, elements in entries
            ]
            nodes = sorted({label for v, a, _ in entries for label in self.touched[(v, a)]})
            groups.append(
                ChannelGroup(
                    id=len(groups),
                    channels=len(comp_roots),
                    axes=axes,
                    nodes=nodes,
                    frozen=list(dict.fromkeys(reasons)),
                    frozen_classes=np.array([r in frozen_roots for r in comp_roots], dtype=bool),
                )
            )
        return ChannelAnalysis(groups=groups, graph=graph)


def _unknowns(shape: Iterable[Any]) -> int:
    return sum(1 for d in shape if not isinstance(d, int))


def analyze_channels(
    model: ir.Model,
    *,
    ignore: Sequence[str] = (),
    attention: bool = False,
    progress: Callable[[str], None] | None = None,
) -> ChannelAnalysis:
    """Find the coupled channel groups of ``model`` (which is not modified).

    Args:
        model: The model (main graph and If/Loop/Scan bodies are analysed).
        ignore: Node names (shell-style patterns) or op types whose channels must not change.
        attention: Let MatMuls between two activations (attention scores) couple channels, so
            that heads can be pruned; off by default, which freezes such groups.
        progress: Called with the name of each graph analysed.
    """
    builder = _Builder(model, attention=attention, ignore=ignore)
    for graph in model.graphs():
        if progress is not None:
            progress(graph.name or "main graph")
        builder.run_graph(graph)
    return builder.finish()
