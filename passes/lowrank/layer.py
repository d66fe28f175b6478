"""What every factorizable layer offers the low-rank engine, and the graph edits they share.

A :class:`Candidate` wraps one node with a constant weight. It presents the weight as a stack
of matrices ``W_s`` (m x n, ``y = W_s x``: one per batch slice of a batched MatMul weight or per
Conv group, all factorized at one rank), says which activation feeds it and how to cut that
activation into the input vectors ``x`` of each slice (for data-aware SVD), what it costs at
a rank, and rewrites itself into two nodes given the factors ``A_s`` (m x r), ``B_s`` (r x n)
and an optional output correction ``c_s`` (m) that is added to the bias.
"""

from __future__ import annotations

import abc
import itertools
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import onnx_ir as ir

from irpass.analysis.layout import WeightLayout

__all__ = [
    "Candidate",
    "attr_int",
    "attr_ints",
    "constant_array",
    "fresh_name",
    "layer_name",
    "private_constant",
]


def constant_array(value: ir.Value | None) -> np.ndarray | None:
    """The numpy value of an initializer or Constant output, else None."""
    if value is None:
        return None
    tensor = ir.convenience.get_const_tensor(value)
    return None if tensor is None else tensor.numpy()


def attr_int(node: ir.Node, name: str, default: int) -> int:
    """An integer attribute or its default."""
    attr = node.attributes.get(name)
    return default if attr is None else int(attr.as_int())


def attr_ints(node: ir.Node, name: str) -> list[int] | None:
    """An integer-list attribute, or None when absent."""
    attr = node.attributes.get(name)
    return None if attr is None else [int(v) for v in attr.as_ints()]


def private_constant(value: ir.Value | None, node: ir.Node) -> np.ndarray | str:
    """The float constant behind ``value`` when ``node`` is its only reader, else why not."""
    if value is None:
        return "missing"
    if value.is_graph_input():
        return f"{value.name!r} is a graph input (overridable at run time)"
    array = constant_array(value)
    if array is None:
        return f"{value.name!r} is not a constant"
    if array.dtype.kind != "f":
        return f"{value.name!r} is not a float tensor ({array.dtype})"
    if value.is_graph_output() or any(user is not node for user, _ in value.uses()):
        return f"{value.name!r} is shared with another node"
    return array


def layer_name(node: ir.Node) -> str:
    """The node's name, or for an unnamed node its op type and output name (deterministic)."""
    return node.name or f"{node.op_type}:{node.outputs[0].name}"


def fresh_name(graph: ir.Graph, base: str, taken: set[str]) -> str:
    """A value name not used in ``graph`` (nor in ``taken``, which receives it)."""
    if not taken:
        taken.update(graph.initializers)
        taken.update(v.name for v in graph.inputs if v.name)
        for node in graph:
            taken.update(v.name for v in node.outputs if v.name)
    name = base
    for i in itertools.count(1):
        if name not in taken:
            break
        name = f"{base}_{i}"
    taken.add(name)
    return name


class Candidate(abc.ABC):
    """One node whose constant weight may be replaced by two thin factors.

    Attributes:
        node: The node.
        layout: Its weight layout (axes, groups, data input).
        weight: The weight as stored.
        matrices: ``(slices, m, n)`` float64: ``y = matrices[s] @ x`` for slice ``s``.
    """

    kind: ClassVar[str]

    def __init__(self, node: ir.Node, layout: WeightLayout, weight: np.ndarray) -> None:
        self.node = node
        #: What ``ignore``, ``ranks`` and the report call the layer (see :func:`layer_name`).
        self.name: str = layer_name(node)
        self.layout = layout
        self.weight = weight
        #: The weight's value (kept: the node's inputs are detached when it is replaced).
        self.weight_value = node.inputs[layout.weight_input]
        data = node.inputs[layout.data_input]
        assert data is not None and data.name, "candidates have a named data input"
        #: Name of the data input (stable while upstream layers are rewritten).
        self.activation_name: str = data.name
        self._output_shape = node.outputs[0].shape
        self.matrices = self._matrices()

    @property
    def activation(self) -> ir.Value:
        """The data input the weight multiplies (as the graph holds it now)."""
        value = self.node.inputs[self.layout.data_input]
        assert value is not None
        return value

    @property
    def shape(self) -> tuple[int, int, int]:
        """(slices, m, n)."""
        s, m, n = self.matrices.shape
        return int(s), int(m), int(n)

    @property
    def params(self) -> int:
        """Weight parameters now."""
        return int(self.weight.size)

    def params_at(self, rank: int) -> int:
        """Weight parameters of the two factors at ``rank``."""
        slices, m, n = self.shape
        return slices * rank * (m + n)

    def mac_ratio(self, rank: int) -> float:
        """MACs of the factorized layer over MACs of the original, at ``rank``."""
        _, m, n = self.shape
        return rank * (m + n) / (m * n)

    def max_rank(self, min_saving: float) -> int:
        """Largest rank saving at least ``min_saving`` of both parameters and MACs (0: none).

        Even with ``min_saving=0`` the factors must be strictly smaller than the weight.
        """
        _, m, n = self.shape
        best = 0
        for rank in range(1, min(m, n)):
            params = self.params_at(rank)
            if params > (1 - min_saving) * self.params or params >= self.params:
                break
            ratio = self.mac_ratio(rank)
            if ratio > 1 - min_saving or ratio >= 1:
                break
            best = rank
        return best

    @abc.abstractmethod
    def _matrices(self) -> np.ndarray:
        """The weight as ``(slices, m, n)`` float64."""

    @abc.abstractmethod
    def vectors(self, activation: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
        """``(slice, rows)`` pairs: the input vectors (rows, n features) of each slice."""

    @abc.abstractmethod
    def rewrite(
        self,
        factors: Sequence[tuple[np.ndarray, np.ndarray]],
        correction: np.ndarray | None,
        taken: set[str],
    ) -> list[ir.Node]:
        """Replace the node by two nodes holding ``A_s`` and ``B_s``; returns the new nodes.

        ``correction`` (slices, m) is added to the output (through the bias) when given.
        """

    # ------------------------------------------------------------------------ graph helpers
    @property
    def graph(self) -> ir.Graph:
        """The graph holding the node."""
        graph = self.node.graph
        assert isinstance(graph, ir.Graph)
        return graph

    def initializer(self, array: np.ndarray, suffix: str, taken: set[str]) -> ir.Value:
        """A new initializer (weight dtype) named after the weight plus ``suffix``."""
        base = self.weight_value
        stem = (base.name if base is not None and base.name else self.name) + suffix
        name = fresh_name(self.graph, stem, taken)
        dtype = self.weight.dtype
        value = ir.Value(name=name, const_value=ir.tensor(np.ascontiguousarray(array, dtype=dtype),
                                                         name=name))
        value.shape = ir.Shape(array.shape)
        value.dtype = ir.DataType.from_numpy(dtype)
        self.graph.register_initializer(value)
        return value

    def replace_with(self, new_nodes: list[ir.Node]) -> None:
        """Put ``new_nodes`` (the last one producing the node's output) in place of the node."""
        old = self.node
        ir.convenience.replace_nodes_and_values(
            self.graph, old, [old], new_nodes, [old.outputs[0]], [new_nodes[-1].outputs[0]]
        )

    def make_node(
        self, op_type: str, inputs: Sequence[ir.Value | None], suffix: str,
        attributes: Mapping[str, Any] | None = None,
    ) -> ir.Node:
        """A default-domain node named after the layer plus ``suffix``."""
        return ir.node(op_type, list(inputs), attributes or {}, name=f"{self.name}{suffix}")


def batch_index(
    activation_batch_dims: Sequence[int], weight_batch_dims: Sequence[int]
) -> Iterator[tuple[int, tuple[slice | int, ...]]]:
    """For each weight slice, its flat index and the activation index selecting its inputs.

    Batch dimensions broadcast numpy-style (right-aligned): an activation dimension of size 1
    (or missing) feeds every slice.
    """
    lead = len(activation_batch_dims) - len(weight_batch_dims)
    for flat, index in enumerate(itertools.product(*(range(d) for d in weight_batch_dims))):
        select: list[slice | int] = [slice(None)] * max(lead, 0)
        for axis, i in enumerate(index):
            position = lead + axis
            if position < 0:
                continue
            select.append(0 if activation_batch_dims[position] == 1 else i)
        yield flat, tuple(select)


def slice_count(shape: Sequence[int]) -> int:
    """Number of matrices in a batched weight of ``shape`` (the product of its leading dims)."""
    return math.prod(shape[:-2]) if len(shape) > 2 else 1
