"""Shared pieces of the channel rules: the context protocols, the registries, small readers.

A rule is ``rule(ctx, node)``: it reads its inputs' element-id maps from ``ctx`` (the
analysis), couples what the op couples and gives its outputs their maps. ``INVERSE[op]``
says which input axis an output axis of a shape-only op comes from.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np
import onnx_ir as ir

__all__ = [
    "INVERSE",
    "RULES",
    "Constants",
    "Context",
    "Inverse",
    "Rule",
    "attr_floats",
    "attr_int",
    "attr_ints",
    "attr_str",
    "const_ints",
    "couple_broadcast",
    "couple_positions",
    "input_at",
    "is_used",
    "label",
    "pass_all",
    "rule",
    "slice_params",
    "split_sizes",
    "unknown",
]


class Constants(Protocol):
    """Reads constants and shapes (enough to evaluate Split / Slice / shape parameters)."""

    opset: int

    def const(self, value: ir.Value | None) -> np.ndarray | None: ...
    def dims(self, value: ir.Value | None) -> list[int | str | None] | None: ...


class Context(Constants, Protocol):
    """What a rule may ask of the analysis (implemented by ``channels._Builder``)."""

    attention: bool

    def rank(self, value: ir.Value | None) -> int | None: ...
    def dim(self, value: ir.Value | None, axis: int) -> int | None: ...
    def map(self, value: ir.Value | None, axis: int) -> np.ndarray | None: ...
    def all_maps(self, value: ir.Value | None) -> dict[int, np.ndarray]: ...
    def set(self, value: ir.Value, axis: int, elements: np.ndarray) -> None: ...
    def demand(self, value: ir.Value | None, axis: int) -> np.ndarray | None: ...
    def need(self, value: ir.Value | None, axis: int, size: int) -> np.ndarray: ...
    def union(self, a: np.ndarray, b: np.ndarray) -> None: ...
    def roots(self, elements: np.ndarray) -> np.ndarray: ...
    def freeze(self, elements: np.ndarray, reason: str) -> None: ...
    def freeze_value(self, value: ir.Value | None, reason: str) -> None: ...
    def role(self, value: ir.Value | None, axis: int, role: str) -> None: ...


Rule = Callable[[Context, ir.Node], None]
Inverse = Callable[[Context, ir.Node, int], "tuple[ir.Value | None, int] | None"]

RULES: dict[str, Rule] = {}
INVERSE: dict[str, Inverse] = {}


def rule(*op_types: str) -> Callable[[Rule], Rule]:
    def register(function: Rule) -> Rule:
        for op_type in op_types:
            RULES[op_type] = function
        return function

    return register


# -- small helpers ------------------------------------------------------------------------
def input_at(node: ir.Node, index: int) -> ir.Value | None:
    return node.inputs[index] if index < len(node.inputs) else None


def label(node: ir.Node) -> str:
    return f"{node.op_type} {node.name or '<unnamed>'}"


def attr_int(node: ir.Node, name: str, default: int) -> int:
    attr = node.attributes.get(name)
    return default if attr is None else int(attr.as_int())


def attr_ints(node: ir.Node, name: str) -> list[int] | None:
    attr = node.attributes.get(name)
    return None if attr is None else [int(v) for v in attr.as_ints()]


def attr_floats(node: ir.Node, name: str) -> list[float] | None:
    attr = node.attributes.get(name)
    return None if attr is None else [float(v) for v in attr.as_floats()]


def attr_str(node: ir.Node, name: str, default: str) -> str:
    attr = node.attributes.get(name)
    return default if attr is None else str(attr.as_string())


def const_ints(ctx: Constants, value: ir.Value | None) -> list[int] | None:
    array = ctx.const(value)
    return None if array is None else [int(v) for v in array.reshape(-1)]


def is_used(value: ir.Value | None) -> bool:
    return value is not None and (bool(value.uses()) or value.is_graph_output())


def pass_all(
    ctx: Context, source: ir.Value | None, target: ir.Value, skip: Sequence[int] = ()
) -> None:
    for axis, elements in ctx.all_maps(source).items():
        if axis not in skip:
            ctx.set(target, axis, elements)


def unknown(ctx: Context, node: ir.Node) -> None:
    """An op without a rule: its inputs keep their channels, its outputs carry none."""
    if any(
        a.type in (ir.AttributeType.GRAPH, ir.AttributeType.GRAPHS)
        for a in node.attributes.values()
    ):
        reason = f"{label(node)} has subgraphs (its bodies are analysed on their own)"
    else:
        reason = f"{label(node)} has no channel rule"
    for value in node.inputs:
        ctx.freeze_value(value, reason)


def split_sizes(ctx: Constants, node: ir.Node, length: int) -> list[int] | None:
    """The sizes of a Split's outputs along its axis (None when not constant)."""
    sizes = attr_ints(node, "split")
    if ctx.opset >= 13 and len(node.inputs) > 1 and node.inputs[1] is not None:
        sizes = const_ints(ctx, node.inputs[1])
        if sizes is None:
            return None
    if sizes:
        return sizes
    count = len(node.outputs)
    chunk = -(-length // count)
    return [min(chunk, length - i * chunk) for i in range(count)]


def slice_params(
    ctx: Constants, node: ir.Node, rank: int
) -> list[tuple[int, int, int, int]] | None:
    """``(axis, start, end, step)`` per sliced axis (axis non-negative), None if not constant."""
    if ctx.opset >= 10:
        starts = const_ints(ctx, input_at(node, 1))
        ends = const_ints(ctx, input_at(node, 2))
        axes = const_ints(ctx, input_at(node, 3)) if input_at(node, 3) is not None else None
        steps = const_ints(ctx, input_at(node, 4)) if input_at(node, 4) is not None else None
        if (
            starts is None
            or ends is None
            or (input_at(node, 3) is not None and axes is None)
            or (input_at(node, 4) is not None and steps is None)
        ):
            return None
    else:
        starts, ends, axes, steps = (
            attr_ints(node, "starts"),
            attr_ints(node, "ends"),
            attr_ints(node, "axes"),
            None,
        )
        if starts is None or ends is None:
            return None
    axes = axes if axes is not None else list(range(len(starts)))
    steps = steps if steps is not None else [1] * len(starts)
    return [(a % rank, s, e, st) for a, s, e, st in zip(axes, starts, ends, steps, strict=True)]


def couple_broadcast(ctx: Context, operands: Sequence[ir.Value | None], out: ir.Value) -> None:
    """Numpy broadcasting: operands of full length on a channel axis are coupled position-wise.

    An operand of length 1 on the axis (or without the axis) broadcasts and is left out; an
    operand whose length is unknown is coupled (its size is then fixed: the group freezes).
    """
    inputs = [v for v in operands if v is not None]
    axes: dict[int, int | None] = {}
    for value in inputs:
        for axis, elements in ctx.all_maps(value).items():
            axes[axis] = max(axes.get(axis) or 0, int(elements.size))
    for axis in sorted(axes):
        sizes = [ctx.dim(v, axis) for v in inputs]
        known = [s for s in sizes if s is not None]
        length = max(known) if known else axes[axis]
        assert length is not None
        coupled = [
            ctx.need(v, axis, length)
            for v, size in zip(inputs, sizes, strict=True)
            if size is None or size == length
        ]
        for other in coupled[1:]:
            ctx.union(coupled[0], other)
        ctx.set(out, axis, coupled[0])


def couple_positions(
    ctx: Context, operands: Sequence[ir.Value | None], out: ir.Value, axes: list[int]
) -> None:
    """On each of ``axes``, couple the operands position-wise and give ``out`` the result."""
    inputs = [v for v in operands if v is not None]
    for axis in axes:
        sizes = [ctx.dim(v, axis) for v in inputs]
        length = max((s for s in sizes if s is not None), default=None)
        if length is None:
            continue
        coupled = [
            ctx.need(v, axis, length)
            for v, s in zip(inputs, sizes, strict=True)
            if s in (None, length)
        ]
        for other in coupled[1:]:
            ctx.union(coupled[0], other)
        ctx.set(out, axis, coupled[0])
