"""Channel rules of ops that move, cut, pad or gather: Concat, Split, Slice, Transpose, ..."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from irpass.analysis.channel_rules._base import (
    INVERSE,
    Context,
    attr_floats,
    attr_int,
    attr_ints,
    attr_str,
    const_ints,
    couple_positions,
    input_at,
    label,
    rule,
    slice_params,
    split_sizes,
)
from irpass.analysis.channel_rules.reshape import shape_entries, shape_sources


@rule("Concat")
def _concat(ctx: Context, node: ir.Node) -> None:
    """Y = [x1 | x2 | ...] along ``axis`` (offsets); other axes are coupled position-wise."""
    inputs = [v for v in node.inputs if v is not None]
    out = node.outputs[0]
    rank = ctx.rank(out) or ctx.rank(inputs[0])
    if rank is None:
        return
    along = attr_int(node, "axis", 0)
    along = along - rank if along >= 0 else along
    if any(ctx.map(v, along) is not None for v in inputs):
        sizes = [ctx.dim(v, along) for v in inputs]
        if all(s is not None for s in sizes):
            parts = [ctx.need(v, along, s) for v, s in zip(inputs, sizes, strict=True) if s]
            ctx.set(out, along, np.concatenate(parts))
    others = {a for v in inputs for a in ctx.all_maps(v) if a != along}
    couple_positions(ctx, inputs, out, sorted(others))


@rule("Split")
def _split(ctx: Context, node: ir.Node) -> None:
    """y_k = x[offset_k : offset_k + size_k] along ``axis``; other axes pass to every output."""
    x = node.inputs[0]
    rank = ctx.rank(x)
    if rank is None:
        return
    along = attr_int(node, "axis", 0)
    along = along - rank if along >= 0 else along
    for axis, elements in ctx.all_maps(x).items():
        if axis != along:
            for out in node.outputs:
                ctx.set(out, axis, elements)
            continue
        sizes = split_sizes(ctx, node, int(elements.size))
        if sizes is None:
            ctx.freeze(elements, f"{label(node)}: split sizes are not constant")
            continue
        offset = 0
        for out, size in zip(node.outputs, sizes, strict=True):
            ctx.set(out, axis, elements[offset : offset + size])
            offset += size


def _sliced_axes(ctx: Context, node: ir.Node, rank: int) -> list[int] | None:
    """The axes a Slice cuts (non-negative), known even when its bounds are not constant."""
    if ctx.opset < 10:
        axes = attr_ints(node, "axes")
        starts = attr_ints(node, "starts") or []
        return [a % rank for a in axes] if axes is not None else list(range(len(starts)))
    if input_at(node, 3) is None:
        starts_value = input_at(node, 1)
        length = (
            None if starts_value is None or starts_value.shape is None else starts_value.shape[0]
        )
        return list(range(length)) if isinstance(length, int) else None
    axes = const_ints(ctx, input_at(node, 3))
    return None if axes is None else [a % rank for a in axes]


@rule("Slice")
def _slice(ctx: Context, node: ir.Node) -> None:
    """Y = x[start:end] along each sliced axis (step 1 on channels), other axes pass."""
    x, out = node.inputs[0], node.outputs[0]
    rank = ctx.rank(x)
    if rank is None:
        return
    params = slice_params(ctx, node, rank)
    sliced = _sliced_axes(ctx, node, rank)
    for axis, elements in ctx.all_maps(x).items():
        if params is None and sliced is not None and axis + rank not in sliced:
            ctx.set(out, axis, elements)
            continue
        if params is None:
            ctx.freeze(elements, f"{label(node)}: slice bounds are not constant")
            continue
        match = [p for p in params if p[0] == axis + rank]
        if not match:
            ctx.set(out, axis, elements)
            continue
        _, start, end, step = match[-1]
        if step != 1:
            ctx.freeze(elements, f"{label(node)} takes every {step}th channel")
            continue
        ctx.set(out, axis, elements[slice(start, end)])


@rule("Transpose")
def _transpose(ctx: Context, node: ir.Node) -> None:
    """Y axis j <- x axis perm[j]."""
    x, out = node.inputs[0], node.outputs[0]
    rank = ctx.rank(x)
    if rank is None:
        return
    perm = attr_ints(node, "perm") or list(reversed(range(rank)))
    for axis, elements in ctx.all_maps(x).items():
        ctx.set(out, perm.index(axis + rank) - rank, elements)


def _inverse_transpose(
    ctx: Context, node: ir.Node, axis: int
) -> tuple[ir.Value | None, int] | None:
    rank = ctx.rank(node.inputs[0])
    if rank is None:
        return None
    perm = attr_ints(node, "perm") or list(reversed(range(rank)))
    return node.inputs[0], perm[axis + rank] - rank


INVERSE["Transpose"] = _inverse_transpose


def _squeeze_axes(ctx: Context, node: ir.Node, rank: int) -> list[int] | None:
    axes = attr_ints(node, "axes")
    if ctx.opset >= 13 and len(node.inputs) > 1 and node.inputs[1] is not None:
        axes = const_ints(ctx, node.inputs[1])
        if axes is None:
            return None
    return None if axes is None else sorted({a % rank for a in axes})


@rule("Unsqueeze")
def _unsqueeze(ctx: Context, node: ir.Node) -> None:
    """New unit axes are inserted; existing axes keep their maps."""
    x, out = node.inputs[0], node.outputs[0]
    rank = ctx.rank(x)
    out_rank = ctx.rank(out)
    if rank is None:
        return
    added = _squeeze_axes(ctx, node, out_rank or rank + 1)
    if added is None or out_rank is None:
        return
    kept = [p for p in range(out_rank) if p not in added]
    for axis, elements in ctx.all_maps(x).items():
        ctx.set(out, kept[axis + rank] - out_rank, elements)


def _inverse_unsqueeze(
    ctx: Context, node: ir.Node, axis: int
) -> tuple[ir.Value | None, int] | None:
    out_rank, rank = ctx.rank(node.outputs[0]), ctx.rank(node.inputs[0])
    if out_rank is None or rank is None:
        return None
    added = _squeeze_axes(ctx, node, out_rank)
    if added is None or axis + out_rank in added:
        return None
    kept = [p for p in range(out_rank) if p not in added]
    return node.inputs[0], kept.index(axis + out_rank) - rank


INVERSE["Unsqueeze"] = _inverse_unsqueeze


@rule("Squeeze")
def _squeeze(ctx: Context, node: ir.Node) -> None:
    """Unit axes are removed; the others keep their maps."""
    x, out = node.inputs[0], node.outputs[0]
    rank, out_rank = ctx.rank(x), ctx.rank(out)
    if rank is None or out_rank is None:
        return
    removed = _squeeze_axes(ctx, node, rank)
    if removed is None:
        dims = ctx.dims(x) or []
        removed = [p for p, d in enumerate(dims) if d == 1]
    kept = [p for p in range(rank) if p not in removed]
    for axis, elements in ctx.all_maps(x).items():
        if axis + rank in kept:
            ctx.set(out, kept.index(axis + rank) - out_rank, elements)


def _inverse_squeeze(ctx: Context, node: ir.Node, axis: int) -> tuple[ir.Value | None, int] | None:
    rank, out_rank = ctx.rank(node.inputs[0]), ctx.rank(node.outputs[0])
    if rank is None or out_rank is None:
        return None
    removed = _squeeze_axes(ctx, node, rank)
    if removed is None:
        return None
    kept = [p for p in range(rank) if p not in removed]
    return node.inputs[0], kept[axis + out_rank] - rank


INVERSE["Squeeze"] = _inverse_squeeze


def _inverse_same(ctx: Context, node: ir.Node, axis: int) -> tuple[ir.Value | None, int] | None:
    return node.inputs[0], axis


for _op in ("Identity", "Cast", "CastLike", "Slice"):
    INVERSE[_op] = _inverse_same


@rule("Resize", "Upsample")
def _resize(ctx: Context, node: ir.Node) -> None:
    """Resampling works per channel: a channel axis passes when its scale is 1."""
    x, out = node.inputs[0], node.outputs[0]
    rank = ctx.rank(x)
    if rank is None:
        return
    if node.op_type == "Upsample" or ctx.opset < 11:
        scales = attr_floats(node, "scales") if ctx.opset < 9 else None
        if scales is None:
            array = ctx.const(input_at(node, 1))
            scales = None if array is None else [float(v) for v in array.reshape(-1)]
        sizes = None
    else:
        array = ctx.const(input_at(node, 2))
        scales = None if array is None or array.size == 0 else [float(v) for v in array.reshape(-1)]
        sizes = const_ints(ctx, input_at(node, 3)) if input_at(node, 3) is not None else None
    axes = attr_ints(node, "axes")
    axes = [a % rank for a in axes] if axes else list(range(rank))
    crop = attr_str(node, "coordinate_transformation_mode", "") == "tf_crop_and_resize"
    for axis, elements in ctx.all_maps(x).items():
        position = axis + rank
        if position not in axes:
            ctx.set(out, axis, elements)
            continue
        index = axes.index(position)
        if not crop and sizes and len(sizes) > index and sizes[index] == elements.size:
            ctx.set(out, axis, elements)
        elif not crop and scales and len(scales) > index and scales[index] == 1.0:
            ctx.set(out, axis, elements)
        else:
            ctx.freeze(elements, f"{label(node)} resamples the channel axis")


@rule("Pad")
def _pad(ctx: Context, node: ir.Node) -> None:
    """Padding is per axis: a channel axis passes when it is not padded."""
    x, out = node.inputs[0], node.outputs[0]
    rank = ctx.rank(x)
    if rank is None:
        return
    pads = attr_ints(node, "pads") if ctx.opset < 11 else const_ints(ctx, input_at(node, 1))
    axes = const_ints(ctx, input_at(node, 3)) if input_at(node, 3) is not None else None
    axes = [a % rank for a in axes] if axes else list(range(rank))
    for axis, elements in ctx.all_maps(x).items():
        position = axis + rank
        if position in axes:
            index = axes.index(position)
            if pads is None or pads[index] != 0 or pads[index + len(axes)] != 0:
                ctx.freeze(elements, f"{label(node)} pads the channel axis")
                continue
        ctx.set(out, axis, elements)


@rule("Tile")
def _tile(ctx: Context, node: ir.Node) -> None:
    """Tiling is per axis: a channel axis passes when its repeat count is 1."""
    x, out = node.inputs[0], node.outputs[0]
    rank = ctx.rank(x)
    repeats = const_ints(ctx, input_at(node, 1))
    if rank is None:
        return
    for axis, elements in ctx.all_maps(x).items():
        if repeats is None or repeats[axis + rank] != 1:
            ctx.freeze(elements, f"{label(node)} repeats the channel axis")
        else:
            ctx.set(out, axis, elements)


@rule("Expand")
def _expand(ctx: Context, node: ir.Node) -> None:
    """Broadcast to a shape: a channel axis passes when the target keeps it (1 or its size)."""
    x, shape, out = node.inputs[0], node.inputs[1], node.outputs[0]
    entries = shape_entries(ctx, shape)
    sources = shape_sources(ctx, node, 1) or []
    for axis, elements in ctx.all_maps(x).items():
        inside = entries is not None and -axis <= len(entries)
        entry = entries[axis] if entries is not None and inside else 1
        editable = inside and sources[axis] is not None
        if entries is None or not (entry == 1 or (entry == elements.size and editable)):
            ctx.freeze(
                elements, f"{label(node)}: the target shape of the channel axis is not constant"
            )
        else:
            ctx.set(out, axis, elements)


def _inverse_expand(ctx: Context, node: ir.Node, axis: int) -> tuple[ir.Value | None, int] | None:
    size = ctx.dim(node.inputs[0], axis)
    return (node.inputs[0], axis) if size is not None and size > 1 else None


INVERSE["Expand"] = _inverse_expand


@rule("Gather")
def _gather(ctx: Context, node: ir.Node) -> None:
    """Y = data.take(indices, axis): other axes of data pass (an embedding's hidden dim)."""
    data, indices, out = node.inputs[0], node.inputs[1], node.outputs[0]
    rank, index_rank = ctx.rank(data), ctx.rank(indices)
    if rank is None or index_rank is None:
        return
    along = attr_int(node, "axis", 0) % rank
    array = ctx.const(data)
    if array is not None and array.dtype.kind == "f" and rank >= 2:
        for position in range(rank):
            if position != along and array.shape[position] > 1:
                ctx.demand(data, position - rank)
                ctx.role(data, position - rank, "weight_out")
    out_rank = rank + index_rank - 1
    for axis, elements in ctx.all_maps(data).items():
        position = axis + rank
        if position == along:
            ctx.freeze(elements, f"{label(node)} selects channels by index")
            continue
        new = position if position < along else position + index_rank - 1
        ctx.set(out, new - out_rank, elements)


@rule("Shape")
def _shape(ctx: Context, node: ir.Node) -> None:
    """Reads sizes: a channel axis in the read range freezes (its count must not change)."""
    x = node.inputs[0]
    rank = ctx.rank(x)
    for axis, elements in ctx.all_maps(x).items():
        if rank is None:
            ctx.freeze(elements, f"{label(node)} reads the channel count")
            continue
        start, end = attr_int(node, "start", 0), attr_int(node, "end", rank)
        if axis + rank in range(rank)[slice(start, end)]:
            ctx.freeze(elements, f"{label(node)} reads the channel count")


@rule("Size")
def _size(ctx: Context, node: ir.Node) -> None:
    """Reads the element count: every channel axis of the input freezes."""
    ctx.freeze_value(node.inputs[0], f"{label(node)} reads the element count")


@rule("Constant", "ConstantOfShape")
def _constant(ctx: Context, node: ir.Node) -> None:
    """Produces a constant: channels appear on it when a consumer needs them."""
