"""Channel rules of normalizations: per-channel parameters couple, cross-channel ones freeze."""

from __future__ import annotations

from collections.abc import Callable

import onnx_ir as ir

from irpass.analysis.channel_rules._base import (
    Context,
    attr_int,
    attr_ints,
    couple_broadcast,
    is_used,
    label,
    pass_all,
    rule,
)


@rule("BatchNormalization", "InstanceNormalization")
def _batch_norm(ctx: Context, node: ir.Node) -> None:
    """Per-channel affine on axis 1: x[:, c] == scale[c] == bias[c] (== mean[c] == var[c])."""
    x, out = node.inputs[0], node.outputs[0]
    rank = ctx.rank(x)
    if rank is None or rank < 2:
        return
    channel = 1 - rank
    params = [v for v in node.inputs[1:] if v is not None]
    if ctx.map(x, channel) is None and all(ctx.map(p, -1) is None for p in params):
        pass_all(ctx, x, out, skip=[-rank])
        return
    size = ctx.dim(x, channel) or next((ctx.dim(p, -1) for p in params if ctx.dim(p, -1)), None)
    if size is None:
        return
    elements = ctx.need(x, channel, size)
    for index, param in enumerate(params):
        ctx.union(elements, ctx.need(param, -1, size))
        ctx.role(param, -1, "norm_scale" if index == 0 else "norm_param")
    if any(is_used(v) for v in node.outputs[1:]):
        ctx.freeze(elements, f"{label(node)} outputs running statistics (training mode)")
    pass_all(ctx, x, out, skip=[-rank])
    ctx.set(out, channel, elements)


@rule("GroupNormalization")
def _group_norm(ctx: Context, node: ir.Node) -> None:
    """Statistics per group of channels: channel k of every group goes together (groups stay)."""
    x, out = node.inputs[0], node.outputs[0]
    rank = ctx.rank(x)
    groups = attr_int(node, "num_groups", 1)
    if rank is None or rank < 2:
        return
    channel = 1 - rank
    size = ctx.dim(x, channel)
    params = [v for v in node.inputs[1:] if v is not None]
    if size is None or (
        ctx.map(x, channel) is None and all(ctx.map(p, -1) is None for p in params)
    ):
        pass_all(ctx, x, out, skip=[channel])
        return
    elements = ctx.need(x, channel, size)
    if size % groups:
        ctx.freeze(elements, f"{label(node)}: {size} channels in {groups} groups")
    else:
        grid = elements.reshape(groups, size // groups)
        for row in grid[1:]:
            ctx.union(grid[0], row)
    for index, param in enumerate(params):
        if ctx.dim(param, -1) == size:
            ctx.union(elements, ctx.need(param, -1, size))
            ctx.role(param, -1, "norm_scale" if index == 0 else "norm_param")
        else:
            ctx.map(param, -1)  # one value per group: unchanged by uniform pruning
    pass_all(ctx, x, out, skip=[channel])
    ctx.set(out, channel, elements)


@rule("LayerNormalization")
def _layer_norm(ctx: Context, node: ir.Node) -> None:
    """LayerNorm over channels: x[..., c] == scale[c] == bias[c] (statistics over kept ones)."""
    inputs = [v for v in node.inputs if v is not None]
    if any(is_used(v) for v in node.outputs[1:]):
        ctx.freeze_value(node.inputs[0], f"{label(node)}: its mean / inv-std outputs are used")
    couple_broadcast(ctx, inputs, node.outputs[0])
    for index, param in enumerate(inputs[1:]):
        for axis in ctx.all_maps(param):
            ctx.role(param, axis, "norm_scale" if index == 0 else "norm_param")


def _freeze_and_pass(
    ctx: Context, node: ir.Node, mixed: Callable[[int, int], bool], why: str
) -> None:
    """Pass every map through; freeze those on axes the op mixes (``mixed(axis, rank)``)."""
    x = node.inputs[0]
    rank = ctx.rank(x)
    for axis, elements in ctx.all_maps(x).items():
        if rank is None or mixed(axis, rank):
            ctx.freeze(elements, f"{label(node)} {why}")
        for out in node.outputs[:1]:
            ctx.set(out, axis, elements)


@rule("LRN")
def _lrn(ctx: Context, node: ir.Node) -> None:
    """LRN normalizes each channel by its neighbours: the channel axis is frozen."""
    _freeze_and_pass(ctx, node, lambda axis, rank: axis == 1 - rank, "mixes neighbouring channels")


@rule("LpNormalization")
def _lp_norm(ctx: Context, node: ir.Node) -> None:
    """Normalizes along ``axis``: channels on that axis are frozen, others pass."""
    along = attr_int(node, "axis", -1)
    _freeze_and_pass(
        ctx,
        node,
        lambda axis, rank: axis == (along - rank if along >= 0 else along),
        "normalizes across channels",
    )


@rule("MeanVarianceNormalization")
def _mvn(ctx: Context, node: ir.Node) -> None:
    """Statistics over ``axes``: channels on those axes are frozen."""
    axes = attr_ints(node, "axes") or [0, 2, 3]
    _freeze_and_pass(
        ctx,
        node,
        lambda axis, rank: axis + rank in [a % rank for a in axes],
        "normalizes across channels",
    )


@rule("Softmax", "LogSoftmax", "Hardmax")
def _softmax(ctx: Context, node: ir.Node) -> None:
    """Normalizes along ``axis`` (opset < 13: along every axis from ``axis`` on): those freeze."""
    new = ctx.opset >= 13
    along = attr_int(node, "axis", -1 if new else 1)

    def mixed(axis: int, rank: int) -> bool:
        start = along % rank
        return axis + rank == start if new else axis + rank >= start

    _freeze_and_pass(ctx, node, mixed, "normalizes across channels")
