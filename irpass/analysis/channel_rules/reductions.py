"""Channel rules of pools and reductions: channels pass unless reduced over."""

from __future__ import annotations

import onnx_ir as ir

from irpass.analysis.channel_rules._base import (
    Context,
    attr_int,
    attr_ints,
    const_ints,
    is_used,
    label,
    rule,
)


@rule(
    "MaxPool",
    "AveragePool",
    "LpPool",
    "GlobalAveragePool",
    "GlobalMaxPool",
    "GlobalLpPool",
)
def _pool(ctx: Context, node: ir.Node) -> None:
    """Pools work per channel: the batch and channel axes pass, spatial maps freeze."""
    x, out = node.inputs[0], node.outputs[0]
    rank = ctx.rank(x)
    if rank is None:
        return
    for axis in (-rank, 1 - rank):
        elements = ctx.map(x, axis)
        if elements is None:
            continue
        ctx.set(out, axis, elements)
        if len(node.outputs) > 1 and is_used(node.outputs[1]):
            ctx.freeze(elements, f"{label(node)}: its indices output encodes channel positions")


def _reduce_axes(ctx: Context, node: ir.Node, rank: int) -> list[int] | None:
    axes = attr_ints(node, "axes")
    from_input = (node.op_type == "ReduceSum" and ctx.opset >= 13) or ctx.opset >= 18
    if from_input and len(node.inputs) > 1 and node.inputs[1] is not None:
        axes = const_ints(ctx, node.inputs[1])
        if axes is None:
            return None
    if not axes:
        if attr_int(node, "noop_with_empty_axes", 0):
            return []
        return list(range(rank))
    return sorted({a % rank for a in axes})


@rule(
    "ReduceMean",
    "ReduceSum",
    "ReduceMax",
    "ReduceMin",
    "ReduceProd",
    "ReduceL1",
    "ReduceL2",
    "ReduceLogSum",
    "ReduceLogSumExp",
    "ReduceSumSquare",
    "ArgMax",
    "ArgMin",
)
def _reduce(ctx: Context, node: ir.Node) -> None:
    """Axes that are not reduced pass (shifted when keepdims=0); reduced channel axes freeze."""
    x, out = node.inputs[0], node.outputs[0]
    rank = ctx.rank(x)
    if rank is None:
        return
    if node.op_type in ("ArgMax", "ArgMin"):
        reduced: list[int] | None = [attr_int(node, "axis", 0) % rank]
    else:
        reduced = _reduce_axes(ctx, node, rank)
    keep = attr_int(node, "keepdims", 1)
    for axis, elements in ctx.all_maps(x).items():
        position = axis + rank
        if reduced is None or position in reduced:
            ctx.freeze(elements, f"{label(node)} reduces over channels")
            continue
        if keep:
            ctx.set(out, axis, elements)
        else:
            out_rank = rank - len(reduced)
            new = position - sum(1 for r in reduced if r < position)
            ctx.set(out, new - out_rank, elements)
