"""Value rules for graph inputs a model uses as shapes, sizes, scales or axes.

Random integers do not make a valid ``Reshape`` target, ``Resize`` size, ``Split`` partition or
``Squeeze`` axis list; ONNX Runtime refuses the model before any pass could be checked. The
graph usually pins the one value that works: the consumer's *declared* output shape (exporters
and shape inference write it), read against its data input's shape. Each rule below is keyed on
how the input is consumed and derives that value, falling back to a value that is valid for
any data (identity reshape, unit scales, the first axes) when shapes are not declared::

    Reshape(x: [2,3,4], shape) -> y: [4,2,3]        shape = [4, 2, 3]
    Resize(x: [1,1,4,4], roi, scales) -> [1,1,2,2]  scales = [1, 1, 0.5, 0.5], roi = [0,..,1,..]
    Split<axis=0>(x: [6], split) -> [2], [4]        split = [2, 4]
    Squeeze(x: [1,3,1,5], axes) -> [3,5]            axes = [0, 2]
    ReduceSum<keepdims=1>(x: [3,2,2], axes) -> [3,1,2]   axes = [1]
    Slice(x, starts, ends, axes, steps)             axes = [0, 1, ...], steps in [1, 3)

Rules register with :func:`irpass.verify.feeds.register_value_rule`; importing this module
(``irpass.verify`` does) is what installs them.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np
import onnx_ir as ir

from irpass.verify.feeds import ValueHint, register_value_rule

__all__ = ["declared_shape", "operand_length"]


def declared_shape(value: ir.Value | None) -> list[int] | None:
    """The value's declared shape when every dimension is a known integer, else None."""
    if value is None or value.shape is None:
        return None
    dims = [d for d in value.shape if isinstance(d, int) and d >= 0]
    return dims if len(dims) == len(value.shape) else None


def operand_length(node: ir.Node, index: int) -> int | None:
    """Number of elements of the 1-D operand ``node.inputs[index]`` (None when unknown)."""
    dims = declared_shape(node.inputs[index] if index < len(node.inputs) else None)
    if dims is None or len(dims) != 1:
        return None
    return dims[0]


def _ints(node: ir.Node, name: str) -> list[int] | None:
    attr = node.attributes.get(name)
    return None if attr is None else [int(v) for v in attr.as_ints()]


def _int(node: ir.Node, name: str, default: int) -> int:
    attr = node.attributes.get(name)
    return default if attr is None else int(attr.as_int())


def _pinned(value: Sequence[float], dtype: type, why: str) -> ValueHint:
    return ValueHint(value=np.asarray(value, dtype=dtype), reasons=[why])


def _first_axes(node: ir.Node, index: int, rank: int | None, why: str) -> ValueHint | None:
    """Axes 0..n-1: distinct and valid for any data of rank >= n."""
    n = operand_length(node, index)
    if n is None or (rank is not None and n > rank):
        return None
    return _pinned(range(n), np.int64, why)


def _removed_axes(
    longer: list[int], shorter: list[int], only_ones: bool = True
) -> list[int] | None:
    """The first axes of ``longer`` whose removal leaves ``shorter``.

    Only size-1 axes may go unless ``only_ones`` is False (a reduction drops any axis).
    """
    removed = len(longer) - len(shorter)
    if removed < 0:
        return None
    for axes in itertools.combinations(range(len(longer)), removed):
        if (not only_ones or all(longer[a] == 1 for a in axes)) and [
            d for i, d in enumerate(longer) if i not in axes
        ] == shorter:
            return list(axes)
    return None


def _name(node: ir.Node) -> str:
    return f"{node.op_type} {node.name!r}" if node.name else node.op_type


def _reshape_rule(node: ir.Node, index: int) -> ValueHint | None:
    """Reshape's target is its declared output shape, else the data's own shape."""
    if index != 1:
        return None
    n = operand_length(node, 1)
    out, data = declared_shape(node.outputs[0]), declared_shape(node.inputs[0])
    if n is None:
        return None
    if out is not None and len(out) == n and (data is None or math.prod(out) == math.prod(data)):
        return _pinned(out, np.int64, f"target shape of {_name(node)} (its declared output)")
    if data is not None and len(data) == n:
        return _pinned(data, np.int64, f"target shape of {_name(node)} (identity)")
    if n >= 1:
        return _pinned([1] * (n - 1) + [-1], np.int64, f"target shape of {_name(node)}")
    return None


def _expand_rule(node: ir.Node, index: int) -> ValueHint | None:
    """Expand's shape is its declared output shape, else the data's shape or ones."""
    if index != 1:
        return None
    n = operand_length(node, 1)
    out, data = declared_shape(node.outputs[0]), declared_shape(node.inputs[0])
    if n is None:
        return None
    if out is not None and len(out) == n:
        return _pinned(out, np.int64, f"shape of {_name(node)} (its declared output)")
    if data is not None and len(data) == n:
        return _pinned(data, np.int64, f"shape of {_name(node)} (the data's)")
    return _pinned([1] * n, np.int64, f"shape of {_name(node)} (broadcast no-op)")


def _tile_rule(node: ir.Node, index: int) -> ValueHint | None:
    """Tile's repeats are declared output / input per axis, else ones."""
    if index != 1:
        return None
    n = operand_length(node, 1)
    out, data = declared_shape(node.outputs[0]), declared_shape(node.inputs[0])
    if n is None:
        return None
    if (
        out
        and data
        and len(out) == len(data) == n
        and all(d and o % d == 0 for o, d in zip(out, data, strict=True))
    ):
        repeats = [o // d for o, d in zip(out, data, strict=True)]
        return _pinned(repeats, np.int64, f"repeats of {_name(node)} (declared output / input)")
    return _pinned([1] * n, np.int64, f"repeats of {_name(node)} (no repetition)")


def _constant_of_shape_rule(node: ir.Node, index: int) -> ValueHint | None:
    out = declared_shape(node.outputs[0])
    if index != 0 or out is None or operand_length(node, 0) != len(out):
        return None
    return _pinned(out, np.int64, f"shape of {_name(node)} (its declared output)")


def _resize_axes(node: ir.Node, rank: int) -> list[int]:
    axes = _ints(node, "axes")
    return [a % rank for a in axes] if axes else list(range(rank))


def _resize_rule(node: ir.Node, index: int) -> ValueHint | None:
    """Resize/Upsample: roi spans the whole input, scales and sizes follow the declared output."""
    data, out = declared_shape(node.inputs[0]), declared_shape(node.outputs[0])
    rank = len(data) if data is not None else len(out) if out is not None else None
    n = operand_length(node, index)
    if rank is None or n is None:
        return None
    axes = _resize_axes(node, rank)
    upsample = node.op_type == "Upsample"
    if not upsample and index == 1 and n == 2 * len(axes):
        return _pinned(
            [0.0] * len(axes) + [1.0] * len(axes),
            np.float32,
            f"roi of {_name(node)} (the whole input)",
        )
    if (index == 1 and upsample) or (index == 2 and not upsample):
        if n != len(axes):
            return None
        if data is not None and out is not None and all(data[a] for a in axes):
            scales = [out[a] / data[a] for a in axes]
            return _pinned(scales, np.float32, f"scales of {_name(node)} (declared output / input)")
        return _pinned([1.0] * n, np.float32, f"scales of {_name(node)} (unit)")
    if index == 3 and n == len(axes):
        source = out if out is not None else data
        if source is None:
            return None
        return _pinned([source[a] for a in axes], np.int64, f"sizes of {_name(node)}")
    return None


def _split_sizes(node: ir.Node, n: int) -> tuple[list[int], str] | None:
    data = declared_shape(node.inputs[0])
    axis = _int(node, "axis", 0)
    outs = [declared_shape(v) for v in node.outputs]
    if node.op_type == "Split" and len(outs) == n and all(o is not None for o in outs):
        return [o[axis] for o in outs if o is not None], "declared outputs"
    if data is None or not -len(data) <= axis < len(data) or n == 0:
        return None
    extent = data[axis]
    part = extent // n
    return [part] * (n - 1) + [extent - part * (n - 1)], f"{extent} in {n} parts"


def _split_rule(node: ir.Node, index: int) -> ValueHint | None:
    """Split/SplitToSequence sizes add up to the split axis (the declared outputs' sizes)."""
    if index != 1:
        return None
    length = operand_length(node, 1)
    if length is None:
        dims = declared_shape(node.inputs[1])
        data = declared_shape(node.inputs[0])
        axis = _int(node, "axis", 0)
        if dims == [] and data is not None and -len(data) <= axis < len(data):
            extent = max(1, data[axis])
            return ValueHint(low=1, high=extent + 1, reasons=[f"chunk size of {_name(node)}"])
        return None
    sizes = _split_sizes(node, length)
    if sizes is None:
        return None
    return _pinned(sizes[0], np.int64, f"split sizes of {_name(node)} ({sizes[1]})")


def _squeeze_rule(node: ir.Node, index: int) -> ValueHint | None:
    """Squeeze removes the size-1 axes its declared output no longer has."""
    n = operand_length(node, 1)
    data, out = declared_shape(node.inputs[0]), declared_shape(node.outputs[0])
    if index != 1 or n is None or data is None:
        return None
    axes = _removed_axes(data, out) if out is not None else None
    if axes is None or len(axes) != n:
        ones = [a for a, d in enumerate(data) if d == 1]
        if len(ones) < n:
            return None
        axes = ones[:n]
    return _pinned(axes, np.int64, f"axes of {_name(node)} (size-1 axes of the data)")


def _unsqueeze_rule(node: ir.Node, index: int) -> ValueHint | None:
    """Unsqueeze inserts the axes its declared output has in addition to the data's."""
    n = operand_length(node, 1)
    data, out = declared_shape(node.inputs[0]), declared_shape(node.outputs[0])
    if index != 1 or n is None:
        return None
    axes = _removed_axes(out, data) if out is not None and data is not None else None
    if axes is None or len(axes) != n:
        axes = list(range(n))
    return _pinned(axes, np.int64, f"axes of {_name(node)} (inserted axes)")


def _reduce_rule(node: ir.Node, index: int) -> ValueHint | None:
    """Reduce* axes: those the declared output reduced, else the first axes."""
    n = operand_length(node, 1)
    data, out = declared_shape(node.inputs[0]), declared_shape(node.outputs[0])
    if index != 1 or n is None:
        return None
    axes: list[int] | None = None
    if data is not None and out is not None:
        if _int(node, "keepdims", 1) and len(out) == len(data):
            axes = [a for a, (d, o) in enumerate(zip(data, out, strict=True)) if d != o]
        elif len(out) < len(data):
            axes = _removed_axes(data, out, only_ones=False)
    if axes is not None and len(axes) == n:
        return _pinned(axes, np.int64, f"axes of {_name(node)} (reduced in its declared output)")
    return _first_axes(node, 1, len(data) if data is not None else None, f"axes of {_name(node)}")


def _slice_rule(node: ir.Node, index: int) -> ValueHint | None:
    """Slice axes are distinct valid axes; steps are positive (starts/ends are clamped)."""
    data = declared_shape(node.inputs[0])
    if index == 3:
        return _first_axes(
            node, 3, len(data) if data is not None else None, f"axes of {_name(node)}"
        )
    if index == 4:
        return ValueHint(low=1, high=3, reasons=[f"steps of {_name(node)} (never 0)"])
    return None


def _pad_rule(node: ir.Node, index: int) -> ValueHint | None:
    """Pad's pads make the declared output (split between both sides), else zeros."""
    n = operand_length(node, index)
    if n is None:
        return None
    if index == 3:
        data = declared_shape(node.inputs[0])
        return _first_axes(
            node, 3, len(data) if data is not None else None, f"axes of {_name(node)}"
        )
    if index != 1 or n % 2:
        return None
    data, out = declared_shape(node.inputs[0]), declared_shape(node.outputs[0])
    axes_given = len(node.inputs) > 3 and node.inputs[3] is not None
    if data is not None and out is not None and not axes_given and n == 2 * len(data):
        growth = [o - d for d, o in zip(data, out, strict=True)]
        begins = [g // 2 for g in growth]
        ends = [g - b for g, b in zip(growth, begins, strict=True)]
        return _pinned(begins + ends, np.int64, f"pads of {_name(node)} (declared output)")
    return _pinned([0] * n, np.int64, f"pads of {_name(node)} (none)")


def _axis_rule(node: ir.Node, index: int) -> ValueHint | None:
    """A scalar axis operand (CumSum, CumProd) lies in [-rank, rank)."""
    data = declared_shape(node.inputs[0])
    rank = (
        len(data)
        if data is not None
        else (
            len(node.inputs[0].shape)
            if node.inputs[0] is not None and node.inputs[0].shape
            else None
        )
    )
    if index != 1 or not rank:
        return None
    return ValueHint(low=-rank, high=rank, reasons=[f"axis of {_name(node)} (rank {rank})"])


def _dft_axis(node: ir.Node) -> int | None:
    data, out = declared_shape(node.inputs[0]), declared_shape(node.outputs[0])
    if data is None or len(data) < 2:
        return None
    signal = range(len(data) - 1)  # the last axis holds real/imaginary parts
    if out is not None and len(out) == len(data):
        changed = [a for a in signal if data[a] != out[a]]
        if changed:
            return changed[0]
    return 1 if len(data) > 2 else 0


def _dft_rule(node: ir.Node, index: int) -> ValueHint | None:
    """DFT: the axis is a signal axis (not the last); the length is the signal's."""
    if index == 2:
        axis = _dft_axis(node)
        if axis is None:
            return None
        return ValueHint(value=np.asarray(axis, np.int64), reasons=[f"axis of {_name(node)}"])
    if index == 1:
        data, out = declared_shape(node.inputs[0]), declared_shape(node.outputs[0])
        attr = node.attributes.get("axis")
        axis = int(attr.as_int()) if attr is not None else _dft_axis(node)
        if data is None or axis is None:
            return None
        onesided = _int(node, "onesided", 0) and not _int(node, "inverse", 0)
        length = out[axis] if out is not None and not onesided else data[axis]
        return ValueHint(
            value=np.asarray(length, np.int64), reasons=[f"dft_length of {_name(node)}"]
        )
    return None


def _col2im_blocks(node: ir.Node, image: list[int]) -> list[int] | None:
    """Block sizes whose block count and volume match the input ``[N, C*prod(block), L]``."""
    data, out = declared_shape(node.inputs[0]), declared_shape(node.outputs[0])
    if data is None or out is None or len(data) != 3 or not out[1]:
        return None
    volume, count = data[1] // out[1], data[2]
    spatial = len(image)
    dilations = _ints(node, "dilations") or [1] * spatial
    strides = _ints(node, "strides") or [1] * spatial
    pads = _ints(node, "pads") or [0] * (2 * spatial)
    for blocks in _factorizations(volume, spatial):
        per_axis = [
            (image[i] + pads[i] + pads[i + spatial] - dilations[i] * (blocks[i] - 1) - 1)
            // strides[i]
            + 1
            for i in range(spatial)
        ]
        if all(p > 0 for p in per_axis) and math.prod(per_axis) == count:
            return list(blocks)
    return None


def _factorizations(volume: int, parts: int) -> list[tuple[int, ...]]:
    """Every way to write ``volume`` as an ordered product of ``parts`` positive integers."""
    if parts == 1:
        return [(volume,)] if volume > 0 else []
    divisors = [d for d in range(1, volume + 1) if volume % d == 0]
    return [(d, *rest) for d in divisors for rest in _factorizations(volume // d, parts - 1)]


def _col2im_rule(node: ir.Node, index: int) -> ValueHint | None:
    """Col2Im: image_shape is the declared output's spatial shape; blocks are solved for."""
    out = declared_shape(node.outputs[0])
    if out is None or len(out) < 3:
        return None
    image = out[2:]
    if index == 1:
        return _pinned(image, np.int64, f"image_shape of {_name(node)} (declared output)")
    if index == 2:
        blocks = _col2im_blocks(node, image)
        if blocks is not None:
            return _pinned(blocks, np.int64, f"block_shape of {_name(node)} (fits the input)")
    return None


def _affine_grid_rule(node: ir.Node, index: int) -> ValueHint | None:
    """AffineGrid size: theta's batch, one channel, the declared grid's spatial sizes."""
    theta, out = declared_shape(node.inputs[0]), declared_shape(node.outputs[0])
    if index != 1 or theta is None or out is None:
        return None
    size = [theta[0], 1, *out[1:-1]]
    if operand_length(node, 1) != len(size):
        return None
    return _pinned(size, np.int64, f"size of {_name(node)} (theta batch, declared grid)")


def _max_unpool_rule(node: ir.Node, index: int) -> ValueHint | None:
    out = declared_shape(node.outputs[0])
    if index != 2 or out is None or operand_length(node, 2) != len(out):
        return None
    return _pinned(out, np.int64, f"output_shape of {_name(node)} (declared output)")


_RULES = {
    "Reshape": _reshape_rule,
    "Expand": _expand_rule,
    "Tile": _tile_rule,
    "ConstantOfShape": _constant_of_shape_rule,
    "Resize": _resize_rule,
    "Upsample": _resize_rule,
    "Split": _split_rule,
    "SplitToSequence": _split_rule,
    "Squeeze": _squeeze_rule,
    "Unsqueeze": _unsqueeze_rule,
    "Slice": _slice_rule,
    "Pad": _pad_rule,
    "CumSum": _axis_rule,
    "CumProd": _axis_rule,
    "DFT": _dft_rule,
    "Col2Im": _col2im_rule,
    "AffineGrid": _affine_grid_rule,
    "MaxUnpool": _max_unpool_rule,
    **{
        op: _reduce_rule
        for op in (
            "ReduceSum",
            "ReduceMean",
            "ReduceMax",
            "ReduceMin",
            "ReduceProd",
            "ReduceL1",
            "ReduceL2",
            "ReduceLogSum",
            "ReduceLogSumExp",
            "ReduceSumSquare",
        )
    },
}

for _op, _rule in _RULES.items():
    register_value_rule(_op, _rule)
