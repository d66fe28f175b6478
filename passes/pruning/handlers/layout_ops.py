"""Surgery for ops whose parameters count channels: Split, Slice, Reshape, Expand, Resize.

::

    Split(x, split=[a, b])          -> split=[kept in a, kept in b]
    Slice(x, start=s, end=e)        -> start=kept before s, end=start + kept in [s, e)
    Reshape(x, [N, C*S])            -> [N, C'*S]      (the entry of the channel axis; -1 and
                                                       copied 0 entries stay)
    Expand(x, [N, C, 1])            -> [N, C', 1]
    Resize(x, sizes=[N, C, H, W])   -> sizes=[N, C', H, W]

Target shapes computed at run time are rewritten where the analysis found the entry's
constant (a Concat piece used only by this shape); anything else was frozen by the analysis.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from irpass.analysis import channel_rules
from irpass.passes.pruning.handlers.base import Surgery, register

__all__ = ["expand", "reshape", "resize", "slice_", "split"]


def _rank(value: ir.Value | None, surgery: Surgery) -> int | None:
    dims = surgery.dims(value)
    return None if dims is None else len(dims)


@register("Split")
def split(node: ir.Node, surgery: Surgery) -> None:
    """New split sizes: the kept positions of each output (``num_outputs`` becomes ``split``)."""
    surgery.slice_inputs(node)  # a constant data input (a sliced position table)
    x = node.inputs[0]
    rank = _rank(x, surgery)
    if rank is None:
        return
    along = node.attributes.get_int("axis", 0)
    along = along - rank if along >= 0 else along
    if not surgery.changed(x, along):
        return
    sizes = []
    for out in node.outputs:
        mask = surgery.keep(out, along)
        if mask is None:
            raise ValueError(f"Split {node.name!r}: output {out.name!r} has no channel map")
        sizes.append(int(mask.sum()))
    if surgery.opset >= 13:
        surgery.replace_input(
            node, 1, np.array(sizes, dtype=np.int64), (node.name or "split") + "_sizes"
        )
        if "num_outputs" in node.attributes:
            del node.attributes["num_outputs"]
    else:
        surgery.set_ints_attribute(node, "split", sizes)


@register("Slice")
def slice_(node: ir.Node, surgery: Surgery) -> None:
    """Bounds of a sliced channel axis count kept positions only (step 1)."""
    surgery.slice_inputs(node)  # a constant data input (a sliced position table)
    x = node.inputs[0]
    rank = _rank(x, surgery)
    if rank is None:
        return
    params = channel_rules.slice_params(surgery, node, rank)
    if params is None:
        return
    starts = [p[1] for p in params]
    ends = [p[2] for p in params]
    edited = False
    for index, (axis, start, end, _) in enumerate(params):
        mask = surgery.keep(x, axis - rank)
        if mask is None or mask.all():
            continue
        begin, stop, _ = slice(start, end).indices(mask.size)
        starts[index] = int(mask[:begin].sum())
        ends[index] = starts[index] + int(mask[begin:stop].sum())
        edited = True
    if not edited:
        return
    if surgery.opset >= 10:
        base = node.name or "slice"
        surgery.replace_input(node, 1, np.array(starts, dtype=np.int64), base + "_starts")
        surgery.replace_input(node, 2, np.array(ends, dtype=np.int64), base + "_ends")
    else:
        surgery.set_ints_attribute(node, "starts", starts)
        surgery.set_ints_attribute(node, "ends", ends)


def _rewrite_shape_entries(node: ir.Node, new_sizes: dict[int, int], surgery: Surgery) -> None:
    """Write ``position -> size`` into the constants ``node``'s target shape is built from."""
    entries = channel_rules.shape_entries(surgery, node.inputs[1])
    sources = channel_rules.shape_sources(surgery, node, 1)
    if entries is None or sources is None:
        raise ValueError(f"{node.op_type} {node.name!r}: the target shape cannot be traced")
    edits: dict[tuple[ir.Node, int], dict[int, int]] = {}
    for position, size in new_sizes.items():
        entry, source = entries[position], sources[position]
        if entry in (-1, 0) or entry == size:
            continue
        if source is None:
            raise ValueError(
                f"{node.op_type} {node.name!r}: shape entry {position} is not constant"
            )
        consumer, index, offset = source
        edits.setdefault((consumer, index), {})[offset] = size
    for (consumer, index), changes in edits.items():
        array = np.array(surgery.const(consumer.inputs[index]))
        flat = array.reshape(-1)
        for offset, size in changes.items():
            flat[offset] = size
        surgery.replace_input(
            consumer, index, flat.reshape(array.shape), (node.name or "shape") + "_target"
        )


@register("Reshape")
def reshape(node: ir.Node, surgery: Surgery) -> None:
    """The target entry of each pruned output axis becomes its kept count."""
    surgery.slice_inputs(node)  # a constant data input (a sliced position table)
    out = node.outputs[0]
    entries = channel_rules.shape_entries(surgery, node.inputs[1])
    rank = _rank(out, surgery) or (len(entries) if entries is not None else None)
    if rank is None:
        return
    changed = {axis + rank: int(mask.sum()) for axis, mask in surgery.pruned_axes(out).items()}
    if changed:
        _rewrite_shape_entries(node, changed, surgery)


@register("Expand")
def expand(node: ir.Node, surgery: Surgery) -> None:
    """A target entry equal to the old channel count becomes the kept count."""
    surgery.slice_inputs(node)  # a constant data input (a sliced position table)
    entries = channel_rules.shape_entries(surgery, node.inputs[1])
    if entries is None:
        return
    changed = {
        axis + len(entries): int(mask.sum())
        for axis, mask in surgery.pruned_axes(node.inputs[0]).items()
        if -axis <= len(entries) and entries[axis] == mask.size
    }
    if changed:
        _rewrite_shape_entries(node, changed, surgery)


@register("Resize")
def resize(node: ir.Node, surgery: Surgery) -> None:
    """Explicit ``sizes`` of a pruned channel axis become its kept count."""
    surgery.slice_inputs(node)  # a constant data input (a sliced position table)
    if surgery.opset < 11 or len(node.inputs) < 4 or node.inputs[3] is None:
        return
    sizes = surgery.const(node.inputs[3])
    rank = _rank(node.inputs[0], surgery)
    if sizes is None or rank is None:
        return
    axes_attr = node.attributes.get_ints("axes", None)
    axes = [a % rank for a in axes_attr] if axes_attr else list(range(rank))
    new = np.array(sizes, dtype=np.int64)
    edited = False
    for axis, mask in surgery.pruned_axes(node.inputs[0]).items():
        if axis + rank in axes:
            new[axes.index(axis + rank)] = int(mask.sum())
            edited = True
    if edited:
        surgery.replace_input(node, 3, new, (node.name or "resize") + "_sizes")
