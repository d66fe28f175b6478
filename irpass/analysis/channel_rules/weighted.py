"""Channel rules of weighted ops: Conv, ConvTranspose, Gemm, MatMul (output channels start here)."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from irpass.analysis.channel_rules._base import (
    Context,
    attr_int,
    couple_positions,
    input_at,
    label,
    rule,
)
from irpass.analysis.layout import weight_layout


@rule("Conv")
def _conv(ctx: Context, node: ir.Node) -> None:
    """y[:, m] <- W[m]; x[:, c] == W[:, c]; grouped: per group, depthwise: x[c] == y[c*mult..]."""
    layout = weight_layout(node)
    x, weight, bias, out = node.inputs[0], node.inputs[1], input_at(node, 2), node.outputs[0]
    array = ctx.const(weight)
    shape = None if array is None else array.shape
    if layout is None or shape is None:
        ctx.freeze_value(x, f"{label(node)}: its weight is not a constant")
        return
    rank = len(shape)
    channel = 1 - rank
    groups, m, n_in = layout.groups, int(shape[0]), int(shape[1])
    out_el = ctx.demand(weight, -rank)
    assert out_el is not None
    ctx.role(weight, -rank, "weight_out")
    x_el = ctx.need(x, channel, n_in * groups)
    ctx.role(x, channel, "act_in")
    if groups == 1:
        ctx.union(x_el, ctx.need(weight, 1 - rank, n_in))
        ctx.role(weight, 1 - rank, "weight_in")
    elif n_in == 1:
        ctx.union(np.repeat(x_el, m // groups), out_el)
    else:
        w_in = ctx.need(weight, 1 - rank, n_in)
        ctx.role(weight, 1 - rank, "weight_in")
        for row in x_el.reshape(groups, n_in):
            ctx.union(row, w_in)
        grid = out_el.reshape(groups, m // groups)
        for row in grid[1:]:
            ctx.union(grid[0], row)
    if bias is not None:
        ctx.union(out_el, ctx.need(bias, -1, m))
        ctx.role(bias, -1, "bias")
    ctx.set(out, channel, out_el)


@rule("ConvTranspose")
def _conv_transpose(ctx: Context, node: ir.Node) -> None:
    """W is [C, M/g, k..]: x[:, c] == W[c]; y[:, g*M/g + j] <- W[:, j] (depthwise: <- x[g])."""
    layout = weight_layout(node)
    x, weight, bias, out = node.inputs[0], node.inputs[1], input_at(node, 2), node.outputs[0]
    array = ctx.const(weight)
    if layout is None or array is None:
        ctx.freeze_value(x, f"{label(node)}: its weight is not a constant")
        return
    rank = array.ndim
    channel = 1 - rank
    groups, c_in, per_group = layout.groups, int(array.shape[0]), int(array.shape[1])
    x_el = ctx.need(x, channel, c_in)
    ctx.role(x, channel, "act_in")
    w_in = ctx.need(weight, -rank, c_in)
    ctx.role(weight, -rank, "weight_in")
    ctx.union(x_el, w_in)
    if groups > 1 and c_in // groups == 1:
        out_el = np.repeat(x_el, per_group)
    else:
        w_out = ctx.need(weight, 1 - rank, per_group)
        ctx.role(weight, 1 - rank, "weight_out")
        for row in x_el.reshape(groups, c_in // groups)[1:]:
            ctx.union(x_el.reshape(groups, c_in // groups)[0], row)
        out_el = np.tile(w_out, groups)
    if bias is not None:
        ctx.union(out_el, ctx.need(bias, -1, out_el.size))
        ctx.role(bias, -1, "bias")
    ctx.set(out, channel, out_el)


@rule("Gemm")
def _gemm(ctx: Context, node: ir.Node) -> None:
    """Y = A'B' + C: A'[:, k] == B'[k]; Y[:, n] <- B'[:, n]; Y[m] <- A'[m]; C broadcasts to Y."""
    a, b, c, out = node.inputs[0], node.inputs[1], input_at(node, 2), node.outputs[0]
    if ctx.rank(a) != 2 or ctx.rank(b) != 2:
        return
    a_m, a_k = (-1, -2) if attr_int(node, "transA", 0) else (-2, -1)
    b_k, b_n = (-1, -2) if attr_int(node, "transB", 0) else (-2, -1)
    _matmul_axes(ctx, node, a, b, out, (a_m, a_k), (b_k, b_n))
    if c is not None:
        for axis in (-1, -2):
            target = ctx.map(out, axis)
            size = ctx.dim(c, axis)
            if (
                target is not None
                and size == target.size
                and (target.size > 1 or ctx.map(c, axis) is not None)
            ):
                ctx.union(target, ctx.need(c, axis, target.size))
                ctx.role(c, axis, "bias")


@rule("MatMul")
def _matmul(ctx: Context, node: ir.Node) -> None:
    """A[..., k] == B[..., k, :]; Y[..., n] <- B[..., n]; Y[..., m, :] <- A[..., m, :]."""
    a, b, out = node.inputs[0], node.inputs[1], node.outputs[0]
    ra, rb = ctx.rank(a), ctx.rank(b)
    if ra is None or rb is None or ra < 2 or rb < 2:
        return
    _matmul_axes(ctx, node, a, b, out, (-2, -1), (-2, -1))
    batch_axes = {axis for v in (a, b) for axis in ctx.all_maps(v) if axis <= -3}
    couple_positions(ctx, [a, b], out, sorted(batch_axes))


def _matmul_axes(
    ctx: Context,
    node: ir.Node,
    a: ir.Value | None,
    b: ir.Value | None,
    out: ir.Value,
    a_axes: tuple[int, int],
    b_axes: tuple[int, int],
) -> None:
    (a_m, a_k), (b_k, b_n) = a_axes, b_axes
    a_const, b_const = ctx.const(a) is not None, ctx.const(b) is not None
    ak, bk = ctx.map(a, a_k), ctx.map(b, b_k)
    if ak is not None or bk is not None:
        size = ctx.dim(a, a_k) or ctx.dim(b, b_k)
        if size is None:
            return
        if not (a_const or b_const) and not ctx.attention:
            for elements in (ak, bk):
                if elements is not None:
                    ctx.freeze(
                        elements,
                        f"{label(node)} multiplies two activations (attention); "
                        "prune(attention=true) couples them",
                    )
        else:
            ctx.union(ctx.need(a, a_k, size), ctx.need(b, b_k, size))
            for value, axis, const in ((a, a_k, a_const), (b, b_k, b_const)):
                ctx.role(value, axis, "weight_in" if const else "act_in")
    m = ctx.map(a, a_m)
    if m is None and a_const:
        m = ctx.demand(a, a_m)
    if m is not None:
        ctx.set(out, -2, m)
        if a_const:
            ctx.role(a, a_m, "weight_out")
    n = ctx.map(b, b_n)
    if n is None and b_const:
        n = ctx.demand(b, b_n)
    if n is not None:
        ctx.set(out, -1, n)
        if b_const:
            ctx.role(b, b_n, "weight_out")
