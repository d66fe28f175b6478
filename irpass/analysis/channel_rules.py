"""Channel rules: how each ONNX op carries channel positions from its inputs to its outputs.

Rules are plain data (``RULES``: op type -> function), used by :mod:`irpass.analysis.channels`.
A rule reads the element-id maps of its inputs, couples what the op couples and gives its
outputs their maps. Axes are negative (counted from the end) so broadcasting keeps them. An
input axis a rule does not read is frozen by the caller, so a rule that leaves something out
errs on the safe side. Each rule's one-line comment is its spec.

``INVERSE`` holds, for shape-only ops (Unsqueeze, Reshape, Transpose, Cast, Slice, ...), which
input axis an output axis comes from, so that a value computed from a constant (a BN scale
unsqueezed to ``[C, 1, 1]``) can be traced back to the constant that surgery slices.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np
import onnx_ir as ir

from irpass.analysis.layout import weight_layout

__all__ = [
    "INVERSE",
    "RULES",
    "Constants",
    "Context",
    "ShapeSource",
    "factor_dims",
    "shape_entries",
    "shape_sources",
    "slice_params",
    "split_sizes",
    "unknown",
]


class Constants(Protocol):
    """Reads constants and shapes (enough to evaluate Split / Slice / shape parameters)."""

    opset: int

    def const(self, value: ir.Value | None) -> np.ndarray | None: ...  # noqa: D102
    def dims(self, value: ir.Value | None) -> list[int | str | None] | None: ...  # noqa: D102


class Context(Constants, Protocol):
    """What a rule may ask of the analysis (implemented by ``channels._Builder``)."""

    attention: bool

    def rank(self, value: ir.Value | None) -> int | None: ...  # noqa: D102
    def dim(self, value: ir.Value, axis: int) -> int | None: ...  # noqa: D102
    def map(self, value: ir.Value | None, axis: int) -> np.ndarray | None: ...  # noqa: D102
    def all_maps(self, value: ir.Value | None) -> dict[int, np.ndarray]: ...  # noqa: D102
    def set(self, value: ir.Value, axis: int, elements: np.ndarray) -> None: ...  # noqa: D102
    def demand(self, value: ir.Value | None, axis: int) -> np.ndarray | None: ...  # noqa: D102
    def need(self, value: ir.Value, axis: int, size: int) -> np.ndarray: ...  # noqa: D102
    def union(self, a: np.ndarray, b: np.ndarray) -> None: ...  # noqa: D102
    def roots(self, elements: np.ndarray) -> np.ndarray: ...  # noqa: D102
    def freeze(self, elements: np.ndarray, reason: str) -> None: ...  # noqa: D102
    def freeze_value(self, value: ir.Value | None, reason: str) -> None: ...  # noqa: D102
    def role(self, value: ir.Value | None, axis: int, role: str) -> None: ...  # noqa: D102


Rule = Callable[[Context, ir.Node], None]
Inverse = Callable[[Context, ir.Node, int], "tuple[ir.Value, int] | None"]

RULES: dict[str, Rule] = {}
INVERSE: dict[str, Inverse] = {}


def _rule(*op_types: str) -> Callable[[Rule], Rule]:
    def register(function: Rule) -> Rule:
        for op_type in op_types:
            RULES[op_type] = function
        return function

    return register


# -- small helpers ------------------------------------------------------------------------
def _in(node: ir.Node, index: int) -> ir.Value | None:
    return node.inputs[index] if index < len(node.inputs) else None


def _label(node: ir.Node) -> str:
    return f"{node.op_type} {node.name or '<unnamed>'}"


def _int(node: ir.Node, name: str, default: int) -> int:
    attr = node.attributes.get(name)
    return default if attr is None else int(attr.as_int())


def _ints(node: ir.Node, name: str) -> list[int] | None:
    attr = node.attributes.get(name)
    return None if attr is None else [int(v) for v in attr.as_ints()]


def _floats(node: ir.Node, name: str) -> list[float] | None:
    attr = node.attributes.get(name)
    return None if attr is None else [float(v) for v in attr.as_floats()]


def _str(node: ir.Node, name: str, default: str) -> str:
    attr = node.attributes.get(name)
    return default if attr is None else str(attr.as_string())


def _const_ints(ctx: Constants, value: ir.Value | None) -> list[int] | None:
    array = ctx.const(value)
    return None if array is None else [int(v) for v in array.reshape(-1)]


def _used(value: ir.Value | None) -> bool:
    return value is not None and (bool(value.uses()) or value.is_graph_output())


def _pass_all(ctx: Context, source: ir.Value | None, target: ir.Value, skip: Sequence[int] = ()) -> None:
    for axis, elements in ctx.all_maps(source).items():
        if axis not in skip:
            ctx.set(target, axis, elements)


def unknown(ctx: Context, node: ir.Node) -> None:
    """An op without a rule: its inputs keep their channels, its outputs carry none."""
    if any(a.type in (ir.AttributeType.GRAPH, ir.AttributeType.GRAPHS)
           for a in node.attributes.values()):
        reason = f"{_label(node)} has subgraphs (its bodies are analysed on their own)"
    else:
        reason = f"{_label(node)} has no channel rule"
    for value in node.inputs:
        ctx.freeze_value(value, reason)


# -- pass-through and elementwise ---------------------------------------------------------
@_rule(
    "Relu", "LeakyRelu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Elu", "Selu", "Celu",
    "Gelu", "Softplus", "Softsign", "Mish", "Exp", "Log", "Sqrt", "Reciprocal", "Neg", "Abs",
    "Erf", "Floor", "Ceil", "Round", "Sign", "Sin", "Cos", "Tan", "Not", "IsNaN", "IsInf",
    "ThresholdedRelu", "Shrink", "Identity", "Cast", "CastLike", "BitwiseNot", "Dropout",
)
def _unary(ctx: Context, node: ir.Node) -> None:
    """y = f(x) per element: every channel map passes through (Dropout's mask too)."""
    for out in node.outputs:
        if _used(out):
            _pass_all(ctx, node.inputs[0], out)
    ctx.all_maps(node.inputs[0])


@_rule(
    "Add", "Sub", "Mul", "Div", "Sum", "Mean", "Max", "Min", "Pow", "Mod", "PRelu", "Where",
    "Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "And", "Or", "Xor", "BitShift",
    "BitwiseAnd", "BitwiseOr", "BitwiseXor", "Clip",
)
def _elementwise(ctx: Context, node: ir.Node) -> None:
    """Broadcasting ops: operands of full length on a channel axis are coupled position-wise."""
    _couple_broadcast(ctx, [v for v in node.inputs if v is not None], node.outputs[0])


def _couple_broadcast(ctx: Context, inputs: Sequence[ir.Value], out: ir.Value) -> None:
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


# -- normalization --------------------------------------------------------------------------
@_rule("BatchNormalization", "InstanceNormalization")
def _batch_norm(ctx: Context, node: ir.Node) -> None:
    """Per-channel affine on axis 1: x[:, c] == scale[c] == bias[c] (== mean[c] == var[c])."""
    x, out = node.inputs[0], node.outputs[0]
    rank = ctx.rank(x)
    if rank is None or rank < 2:
        return
    channel = 1 - rank
    params = [v for v in node.inputs[1:] if v is not None]
    if ctx.map(x, channel) is None and all(ctx.map(p, -1) is None for p in params):
        _pass_all(ctx, x, out, skip=[-rank])
        return
    size = ctx.dim(x, channel) or next(
        (ctx.dim(p, -1) for p in params if ctx.dim(p, -1)), None
    )
    if size is None:
        return
    elements = ctx.need(x, channel, size)
    for index, param in enumerate(params):
        ctx.union(elements, ctx.need(param, -1, size))
        ctx.role(param, -1, "norm_scale" if index == 0 else "norm_param")
    if any(_used(v) for v in node.outputs[1:]):
        ctx.freeze(elements, f"{_label(node)} outputs running statistics (training mode)")
    _pass_all(ctx, x, out, skip=[-rank])
    ctx.set(out, channel, elements)


@_rule("GroupNormalization")
def _group_norm(ctx: Context, node: ir.Node) -> None:
    """Statistics per group of channels: channel k of every group goes together (groups stay)."""
    x, out = node.inputs[0], node.outputs[0]
    rank = ctx.rank(x)
    groups = _int(node, "num_groups", 1)
    if rank is None or rank < 2:
        return
    channel = 1 - rank
    size = ctx.dim(x, channel)
    params = [v for v in node.inputs[1:] if v is not None]
    if size is None or (ctx.map(x, channel) is None and all(ctx.map(p, -1) is None for p in params)):
        _pass_all(ctx, x, out, skip=[channel])
        return
    elements = ctx.need(x, channel, size)
    if size % groups:
        ctx.freeze(elements, f"{_label(node)}: {size} channels in {groups} groups")
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
    _pass_all(ctx, x, out, skip=[channel])
    ctx.set(out, channel, elements)


@_rule("LayerNormalization")
def _layer_norm(ctx: Context, node: ir.Node) -> None:
    """LayerNorm over channels: x[..., c] == scale[c] == bias[c] (statistics over kept ones)."""
    inputs = [v for v in node.inputs if v is not None]
    if any(_used(v) for v in node.outputs[1:]):
        ctx.freeze_value(node.inputs[0], f"{_label(node)}: its mean / inv-std outputs are used")
    _couple_broadcast(ctx, inputs, node.outputs[0])
    for index, param in enumerate(inputs[1:]):
        for axis in ctx.all_maps(param):
            ctx.role(param, axis, "norm_scale" if index == 0 else "norm_param")


def _freeze_and_pass(ctx: Context, node: ir.Node, mixed: Callable[[int, int], bool], why: str) -> None:
    """Pass every map through; freeze those on axes the op mixes (``mixed(axis, rank)``)."""
    x = node.inputs[0]
    rank = ctx.rank(x)
    for axis, elements in ctx.all_maps(x).items():
        if rank is None or mixed(axis, rank):
            ctx.freeze(elements, f"{_label(node)} {why}")
        for out in node.outputs[:1]:
            ctx.set(out, axis, elements)


@_rule("LRN")
def _lrn(ctx: Context, node: ir.Node) -> None:
    """LRN normalizes each channel by its neighbours: the channel axis is frozen."""
    _freeze_and_pass(ctx, node, lambda axis, rank: axis == 1 - rank, "mixes neighbouring channels")


@_rule("LpNormalization")
def _lp_norm(ctx: Context, node: ir.Node) -> None:
    """Normalizes along ``axis``: channels on that axis are frozen, others pass."""
    along = _int(node, "axis", -1)
    _freeze_and_pass(
        ctx, node, lambda axis, rank: axis == (along - rank if along >= 0 else along),
        "normalizes across channels",
    )


@_rule("MeanVarianceNormalization")
def _mvn(ctx: Context, node: ir.Node) -> None:
    """Statistics over ``axes``: channels on those axes are frozen."""
    axes = _ints(node, "axes") or [0, 2, 3]
    _freeze_and_pass(
        ctx, node, lambda axis, rank: axis + rank in [a % rank for a in axes],
        "normalizes across channels",
    )


@_rule("Softmax", "LogSoftmax", "Hardmax")
def _softmax(ctx: Context, node: ir.Node) -> None:
    """Normalizes along ``axis`` (opset < 13: along every axis from ``axis`` on): those freeze."""
    new = ctx.opset >= 13
    along = _int(node, "axis", -1 if new else 1)

    def mixed(axis: int, rank: int) -> bool:
        start = along % rank
        return axis + rank == start if new else axis + rank >= start

    _freeze_and_pass(ctx, node, mixed, "normalizes across channels")


# -- weighted ops ---------------------------------------------------------------------------
@_rule("Conv")
def _conv(ctx: Context, node: ir.Node) -> None:
    """y[:, m] <- W[m]; x[:, c] == W[:, c]; grouped: per group, depthwise: x[c] == y[c*mult..]."""
    layout = weight_layout(node)
    x, weight, bias, out = node.inputs[0], node.inputs[1], _in(node, 2), node.outputs[0]
    array = ctx.const(weight)
    shape = None if array is None else array.shape
    if layout is None or shape is None:
        ctx.freeze_value(x, f"{_label(node)}: its weight is not a constant")
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


@_rule("ConvTranspose")
def _conv_transpose(ctx: Context, node: ir.Node) -> None:
    """W is [C, M/g, k..]: x[:, c] == W[c]; y[:, g*M/g + j] <- W[:, j] (depthwise: <- x[g])."""
    layout = weight_layout(node)
    x, weight, bias, out = node.inputs[0], node.inputs[1], _in(node, 2), node.outputs[0]
    array = ctx.const(weight)
    if layout is None or array is None:
        ctx.freeze_value(x, f"{_label(node)}: its weight is not a constant")
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


@_rule("Gemm")
def _gemm(ctx: Context, node: ir.Node) -> None:
    """Y = A'B' + C: A'[:, k] == B'[k]; Y[:, n] <- B'[:, n]; Y[m] <- A'[m]; C broadcasts to Y."""
    a, b, c, out = node.inputs[0], node.inputs[1], _in(node, 2), node.outputs[0]
    if ctx.rank(a) != 2 or ctx.rank(b) != 2:
        return
    a_m, a_k = (-1, -2) if _int(node, "transA", 0) else (-2, -1)
    b_k, b_n = (-1, -2) if _int(node, "transB", 0) else (-2, -1)
    _matmul_axes(ctx, node, a, b, out, (a_m, a_k), (b_k, b_n))
    if c is not None:
        for axis in (-1, -2):
            target = ctx.map(out, axis)
            size = ctx.dim(c, axis)
            if target is not None and size == target.size and (target.size > 1 or ctx.map(c, axis) is not None):
                ctx.union(target, ctx.need(c, axis, target.size))
                ctx.role(c, axis, "bias")


@_rule("MatMul")
def _matmul(ctx: Context, node: ir.Node) -> None:
    """A[..., k] == B[..., k, :]; Y[..., n] <- B[..., n]; Y[..., m, :] <- A[..., m, :]."""
    a, b, out = node.inputs[0], node.inputs[1], node.outputs[0]
    ra, rb = ctx.rank(a), ctx.rank(b)
    if ra is None or rb is None or ra < 2 or rb < 2:
        return
    _matmul_axes(ctx, node, a, b, out, (-2, -1), (-2, -1))
    batch_axes = {axis for v in (a, b) for axis in ctx.all_maps(v) if axis <= -3}
    _couple_batch(ctx, [a, b], out, sorted(batch_axes))


def _couple_batch(ctx: Context, inputs: list[ir.Value], out: ir.Value, axes: list[int]) -> None:
    for axis in axes:
        sizes = [ctx.dim(v, axis) for v in inputs]
        length = max((s for s in sizes if s is not None), default=None)
        if length is None:
            continue
        coupled = [ctx.need(v, axis, length) for v, s in zip(inputs, sizes, strict=True) if s in (None, length)]
        for other in coupled[1:]:
            ctx.union(coupled[0], other)
        ctx.set(out, axis, coupled[0])


def _matmul_axes(
    ctx: Context,
    node: ir.Node,
    a: ir.Value,
    b: ir.Value,
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
                        f"{_label(node)} multiplies two activations (attention); "
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


# -- pooling and reductions -----------------------------------------------------------------
@_rule(
    "MaxPool", "AveragePool", "LpPool", "GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool",
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
        if len(node.outputs) > 1 and _used(node.outputs[1]):
            ctx.freeze(elements, f"{_label(node)}: its indices output encodes channel positions")


def _reduce_axes(ctx: Context, node: ir.Node, rank: int) -> list[int] | None:
    axes = _ints(node, "axes")
    from_input = node.op_type == "ReduceSum" and ctx.opset >= 13 or ctx.opset >= 18
    if from_input and len(node.inputs) > 1 and node.inputs[1] is not None:
        axes = _const_ints(ctx, node.inputs[1])
        if axes is None:
            return None
    if not axes:
        if _int(node, "noop_with_empty_axes", 0):
            return []
        return list(range(rank))
    return sorted({a % rank for a in axes})


@_rule(
    "ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
    "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare", "ArgMax", "ArgMin",
)
def _reduce(ctx: Context, node: ir.Node) -> None:
    """Axes that are not reduced pass (shifted when keepdims=0); reduced channel axes freeze."""
    x, out = node.inputs[0], node.outputs[0]
    rank = ctx.rank(x)
    if rank is None:
        return
    if node.op_type in ("ArgMax", "ArgMin"):
        reduced: list[int] | None = [_int(node, "axis", 0) % rank]
    else:
        reduced = _reduce_axes(ctx, node, rank)
    keep = _int(node, "keepdims", 1)
    for axis, elements in ctx.all_maps(x).items():
        position = axis + rank
        if reduced is None or position in reduced:
            ctx.freeze(elements, f"{_label(node)} reduces over channels")
            continue
        if keep:
            ctx.set(out, axis, elements)
        else:
            out_rank = rank - len(reduced)
            new = position - sum(1 for r in reduced if r < position)
            ctx.set(out, new - out_rank, elements)


# -- layout ops -----------------------------------------------------------------------------
@_rule("Concat")
def _concat(ctx: Context, node: ir.Node) -> None:
    """y = [x1 | x2 | ...] along ``axis`` (offsets); other axes are coupled position-wise."""
    inputs = [v for v in node.inputs if v is not None]
    out = node.outputs[0]
    rank = ctx.rank(out) or ctx.rank(inputs[0])
    if rank is None:
        return
    along = _int(node, "axis", 0)
    along = along - rank if along >= 0 else along
    if any(ctx.map(v, along) is not None for v in inputs):
        sizes = [ctx.dim(v, along) for v in inputs]
        if all(s is not None for s in sizes):
            parts = [ctx.need(v, along, s) for v, s in zip(inputs, sizes, strict=True) if s]
            ctx.set(out, along, np.concatenate(parts))
    others = {a for v in inputs for a in ctx.all_maps(v) if a != along}
    _couple_batch(ctx, inputs, out, sorted(others))


@_rule("Split")
def _split(ctx: Context, node: ir.Node) -> None:
    """y_k = x[offset_k : offset_k + size_k] along ``axis``; other axes pass to every output."""
    x = node.inputs[0]
    rank = ctx.rank(x)
    if rank is None:
        return
    along = _int(node, "axis", 0)
    along = along - rank if along >= 0 else along
    for axis, elements in ctx.all_maps(x).items():
        if axis != along:
            for out in node.outputs:
                ctx.set(out, axis, elements)
            continue
        sizes = split_sizes(ctx, node, int(elements.size))
        if sizes is None:
            ctx.freeze(elements, f"{_label(node)}: split sizes are not constant")
            continue
        offset = 0
        for out, size in zip(node.outputs, sizes, strict=True):
            ctx.set(out, axis, elements[offset : offset + size])
            offset += size


def split_sizes(ctx: Constants, node: ir.Node, length: int) -> list[int] | None:
    """The sizes of a Split's outputs along its axis (None when not constant)."""
    sizes = _ints(node, "split")
    if ctx.opset >= 13 and len(node.inputs) > 1 and node.inputs[1] is not None:
        sizes = _const_ints(ctx, node.inputs[1])
        if sizes is None:
            return None
    if sizes:
        return sizes
    count = len(node.outputs)
    chunk = -(-length // count)
    return [min(chunk, length - i * chunk) for i in range(count)]


def slice_params(ctx: Constants, node: ir.Node, rank: int) -> list[tuple[int, int, int, int]] | None:
    """``(axis, start, end, step)`` per sliced axis (axis non-negative), None if not constant."""
    if ctx.opset >= 10:
        starts = _const_ints(ctx, _in(node, 1))
        ends = _const_ints(ctx, _in(node, 2))
        axes = _const_ints(ctx, _in(node, 3)) if _in(node, 3) is not None else None
        steps = _const_ints(ctx, _in(node, 4)) if _in(node, 4) is not None else None
        if starts is None or ends is None or (_in(node, 3) is not None and axes is None) or (
            _in(node, 4) is not None and steps is None
        ):
            return None
    else:
        starts, ends, axes, steps = _ints(node, "starts"), _ints(node, "ends"), _ints(node, "axes"), None
        if starts is None or ends is None:
            return None
    axes = axes if axes is not None else list(range(len(starts)))
    steps = steps if steps is not None else [1] * len(starts)
    return [(a % rank, s, e, st) for a, s, e, st in zip(axes, starts, ends, steps, strict=True)]


def _sliced_axes(ctx: Context, node: ir.Node, rank: int) -> list[int] | None:
    """The axes a Slice cuts (non-negative), known even when its bounds are not constant."""
    if ctx.opset < 10:
        axes = _ints(node, "axes")
        starts = _ints(node, "starts") or []
        return [a % rank for a in axes] if axes is not None else list(range(len(starts)))
    if _in(node, 3) is None:
        starts_value = _in(node, 1)
        length = None if starts_value is None or starts_value.shape is None else starts_value.shape[0]
        return list(range(length)) if isinstance(length, int) else None
    axes = _const_ints(ctx, _in(node, 3))
    return None if axes is None else [a % rank for a in axes]


@_rule("Slice")
def _slice(ctx: Context, node: ir.Node) -> None:
    """y = x[start:end] along each sliced axis (step 1 on channels), other axes pass."""
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
            ctx.freeze(elements, f"{_label(node)}: slice bounds are not constant")
            continue
        match = [p for p in params if p[0] == axis + rank]
        if not match:
            ctx.set(out, axis, elements)
            continue
        _, start, end, step = match[-1]
        if step != 1:
            ctx.freeze(elements, f"{_label(node)} takes every {step}th channel")
            continue
        ctx.set(out, axis, elements[slice(start, end)])


@_rule("Transpose")
def _transpose(ctx: Context, node: ir.Node) -> None:
    """y axis j <- x axis perm[j]."""
    x, out = node.inputs[0], node.outputs[0]
    rank = ctx.rank(x)
    if rank is None:
        return
    perm = _ints(node, "perm") or list(reversed(range(rank)))
    for axis, elements in ctx.all_maps(x).items():
        ctx.set(out, perm.index(axis + rank) - rank, elements)


def _inverse_transpose(ctx: Context, node: ir.Node, axis: int) -> tuple[ir.Value, int] | None:
    rank = ctx.rank(node.inputs[0])
    if rank is None:
        return None
    perm = _ints(node, "perm") or list(reversed(range(rank)))
    return node.inputs[0], perm[axis + rank] - rank


INVERSE["Transpose"] = _inverse_transpose


def _squeeze_axes(ctx: Context, node: ir.Node, rank: int) -> list[int] | None:
    axes = _ints(node, "axes")
    if ctx.opset >= 13 and len(node.inputs) > 1 and node.inputs[1] is not None:
        axes = _const_ints(ctx, node.inputs[1])
        if axes is None:
            return None
    return None if axes is None else sorted({a % rank for a in axes})


@_rule("Unsqueeze")
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


def _inverse_unsqueeze(ctx: Context, node: ir.Node, axis: int) -> tuple[ir.Value, int] | None:
    out_rank, rank = ctx.rank(node.outputs[0]), ctx.rank(node.inputs[0])
    if out_rank is None or rank is None:
        return None
    added = _squeeze_axes(ctx, node, out_rank)
    if added is None or axis + out_rank in added:
        return None
    kept = [p for p in range(out_rank) if p not in added]
    return node.inputs[0], kept.index(axis + out_rank) - rank


INVERSE["Unsqueeze"] = _inverse_unsqueeze


@_rule("Squeeze")
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


def _inverse_squeeze(ctx: Context, node: ir.Node, axis: int) -> tuple[ir.Value, int] | None:
    rank, out_rank = ctx.rank(node.inputs[0]), ctx.rank(node.outputs[0])
    if rank is None or out_rank is None:
        return None
    removed = _squeeze_axes(ctx, node, rank)
    if removed is None:
        return None
    kept = [p for p in range(rank) if p not in removed]
    return node.inputs[0], kept[axis + out_rank] - rank


INVERSE["Squeeze"] = _inverse_squeeze


def _inverse_same(ctx: Context, node: ir.Node, axis: int) -> tuple[ir.Value, int] | None:
    return node.inputs[0], axis


for _op in ("Identity", "Cast", "CastLike", "Slice"):
    INVERSE[_op] = _inverse_same


# -- reshapes -------------------------------------------------------------------------------
Dims = list[int | str | None]


def factor_dims(in_dims: Dims, out_dims: Dims) -> list[tuple[list[int], list[int]]] | None:
    """Pair up runs of input and output dims with equal products (the reshape's structure).

    Equal dims (same number or same symbol) pair one-to-one; unit dims stand alone; other
    runs must be static. None when the dims cannot be related.
    """
    groups: list[tuple[list[int], list[int]]] = []
    i = j = 0
    while i < len(in_dims) or j < len(out_dims):
        a = in_dims[i] if i < len(in_dims) else None
        b = out_dims[j] if j < len(out_dims) else None
        if i < len(in_dims) and j < len(out_dims) and a is not None and a == b:
            groups.append(([i], [j]))
            i, j = i + 1, j + 1
        elif a == 1:
            groups.append(([i], []))
            i += 1
        elif b == 1:
            groups.append(([], [j]))
            j += 1
        else:
            gi, gj = [i], [j]
            if not isinstance(a, int) or not isinstance(b, int):
                return None
            pa, pb = a, b
            i, j = i + 1, j + 1
            while pa != pb:
                if pa < pb:
                    if i >= len(in_dims) or not isinstance(in_dims[i], int):
                        return None
                    pa *= int(in_dims[i])  # type: ignore[arg-type]
                    gi.append(i)
                    i += 1
                else:
                    if j >= len(out_dims) or not isinstance(out_dims[j], int):
                        return None
                    pb *= int(out_dims[j])  # type: ignore[arg-type]
                    gj.append(j)
                    j += 1
            groups.append((gi, gj))
    return groups


ShapeSource = tuple[ir.Node, int, int]


def shape_entries(ctx: Constants, value: ir.Value | None) -> Dims | None:
    """What a shape tensor holds, entry by entry: ints, symbols of a ``Shape(x)``, or None.

    Follows the Concat / Shape / Gather / Slice / Cast / Squeeze / Unsqueeze chains exporters
    build dynamic target shapes from.
    """
    traced = _trace_shape(ctx, value)
    return None if traced is None else [entry for entry, _ in traced]


def shape_sources(ctx: Constants, value: ir.Value | None) -> list[ShapeSource | None] | None:
    """Where each entry of a shape tensor can be rewritten: (consumer node, input, index).

    An entry is rewritable when it comes from a constant that reaches ``value`` through
    Concat / Cast / Identity nodes used by nothing else (so the edit changes only this shape).
    """
    traced = _trace_shape(ctx, value)
    return None if traced is None else [source for _, source in traced]


def _trace_shape(
    ctx: Constants, value: ir.Value | None, consumer: tuple[ir.Node, int] | None = None
) -> list[tuple[int | str | None, ShapeSource | None]] | None:
    if value is None:
        return None
    array = ctx.const(value)
    if array is not None:
        private = consumer is not None and len(value.uses()) == 1 and not value.is_graph_output()
        return [
            (int(v), (consumer[0], consumer[1], k) if private and consumer else None)
            for k, v in enumerate(array.reshape(-1))
        ]
    node = value.producer()
    if node is None or node.domain not in ("", "ai.onnx"):
        return None
    op = node.op_type
    single = len(value.uses()) == 1 and not value.is_graph_output()
    if op in ("Cast", "Identity"):
        inner = _trace_shape(ctx, node.inputs[0], (node, 0))
        return None if inner is None else [(e, s if single else None) for e, s in inner]
    if op == "Concat":
        parts = [_trace_shape(ctx, v, (node, k)) for k, v in enumerate(node.inputs)]
        if any(p is None for p in parts):
            return None
        return [(e, s if single else None) for p in parts for e, s in p]  # type: ignore[union-attr]
    if op in ("Squeeze", "Unsqueeze", "Reshape"):
        inner = _trace_shape(ctx, node.inputs[0])
        return None if inner is None or len(inner) != 1 else [(inner[0][0], None)]
    if op == "Shape":
        dims = ctx.dims(node.inputs[0])
        if dims is None:
            return None
        start, end = _int(node, "start", 0), _int(node, "end", len(dims))
        return [(d, None) for d in dims[slice(start, end)]]
    if op in ("Gather", "Slice"):
        inner = _trace_shape(ctx, node.inputs[0])
        if inner is None:
            return None
        if op == "Gather":
            index = _const_ints(ctx, node.inputs[1])
            return None if index is None else [(inner[k][0], None) for k in index]
        params = slice_params(ctx, node, 1)
        if params is None or len(params) != 1:
            return None
        _, start, end, step = params[0]
        return [(e, None) for e, _ in inner[slice(start, end, step)]]
    return None


def _resolve(in_dims: Dims, entries: Dims, allowzero: bool) -> Dims:
    out: Dims = [
        in_dims[k] if (e == 0 and not allowzero and k < len(in_dims)) else e
        for k, e in enumerate(entries)
    ]
    if out.count(-1) == 1:
        static_in = math.prod(d for d in in_dims if isinstance(d, int))
        symbols_in = [d for d in in_dims if not isinstance(d, int)]
        others = [d for d in out if d != -1]
        static_out = math.prod(d for d in others if isinstance(d, int))
        symbols_out = [d for d in others if not isinstance(d, int)]
        index = out.index(-1)
        if any(s is None for s in symbols_in + symbols_out):
            out[index] = None
        elif sorted(map(str, symbols_in)) == sorted(map(str, symbols_out)):
            out[index] = static_in // static_out if static_out and static_in % static_out == 0 else None
        elif not symbols_out and len(symbols_in) == 1 and static_in == static_out:
            out[index] = symbols_in[0]
        else:
            out[index] = None
    return out


def _carry(
    ctx: Context,
    elements: np.ndarray,
    position: int,
    in_dims: Dims,
    out_dims: Dims,
    group: tuple[list[int], list[int]],
) -> tuple[int, np.ndarray] | str:
    """Map one mapped input axis through a reshape group: (output axis, its ids) or why not."""
    gi, gj = group
    if len(gi) == 1 and len(gj) == 1 and in_dims[gi[0]] == out_dims[gj[0]]:
        return gj[0], elements
    if not gj:
        return "removes the channel axis"
    d_in = [int(in_dims[k]) for k in gi]  # type: ignore[arg-type]
    d_out = [int(out_dims[k]) for k in gj]  # type: ignore[arg-type]
    flat = elements[np.indices(d_in)[gi.index(position)].reshape(-1)]
    grid = flat.reshape(d_out)
    roots = ctx.roots(grid)
    candidates = [t for t, d in enumerate(d_out) if d > 1]
    for t in candidates:
        view = np.moveaxis(roots, t, 0).reshape(d_out[t], -1)
        if np.all(view == view[:, :1]):
            return gj[t], np.moveaxis(grid, t, 0).reshape(d_out[t], -1)[:, 0]
    if not ctx.attention or len(candidates) < 2:
        return (
            f"splits the channel axis into {d_out} (ambiguous: heads, groups or spatial "
            "blocks; prune(attention=true) reads [..., heads, head_dim] as heads)"
        )
    # Attention: [..., heads, head_dim]: a head (its head_dim positions, and its q/k/v
    # copies) is one unit.
    t = candidates[-2]
    view = np.moveaxis(grid, t, 0).reshape(d_out[t], -1)
    for column in range(1, view.shape[1]):
        ctx.union(view[:, 0], view[:, column])
    return gj[t], view[:, 0]


def _map_reshape(
    ctx: Context,
    node: ir.Node,
    in_dims: Dims | None,
    out_dims: Dims | None,
    entries: Dims | None,
    editable: Sequence[bool],
    allowzero: bool = False,
) -> None:
    """Carry channel maps through a reshape; ``entries`` None means a Flatten (no target)."""
    x, out = node.inputs[0], node.outputs[0]
    maps = ctx.all_maps(x)
    if not maps:
        return
    label = _label(node)
    groups = factor_dims(in_dims, out_dims) if in_dims is not None and out_dims is not None else None
    if groups is None or in_dims is None or out_dims is None:
        for elements in maps.values():
            ctx.freeze(elements, f"{label}: input and output shapes cannot be related")
        return
    rank, out_rank = len(in_dims), len(out_dims)
    copied = set() if allowzero else {k for k, e in enumerate(entries or []) if e == 0 and k < rank}
    for axis, elements in maps.items():
        position = axis + rank
        group = next(g for g in groups if position in g[0])
        if any(p - rank in maps for p in group[0] if p != position):
            ctx.freeze(elements, f"{label} merges two channel axes")
            continue
        carried = _carry(ctx, elements, position, in_dims, out_dims, group)
        if isinstance(carried, str):
            ctx.freeze(elements, f"{label} {carried}")
            continue
        target, out_el = carried
        entry = entries[target] if entries is not None and target < len(entries) else None
        ok_entry = (
            entries is None
            or entry == -1
            or (entry is not None and entry != 0 and target < len(editable) and editable[target])
            or (entry == 0 and not allowzero and group == ([position], [target]))
        )
        bad_copy = [k for k in copied if k - rank in maps and k != target]
        if not ok_entry or bad_copy:
            ctx.freeze(
                elements, f"{label}: the target shape entry for the channel axis is computed at run time"
            )
            continue
        ctx.set(out, target - out_rank, out_el)


@_rule("Reshape")
def _reshape(ctx: Context, node: ir.Node) -> None:
    """Runs of dims with equal products map channel i to its block (merge) or split it."""
    x, shape = node.inputs[0], node.inputs[1]
    in_dims = ctx.dims(x)
    entries = shape_entries(ctx, shape)
    sources = shape_sources(ctx, shape)
    allowzero = bool(_int(node, "allowzero", 0))
    out_dims = ctx.dims(node.outputs[0])
    if entries is not None and in_dims is not None:
        resolved = _resolve(in_dims, entries, allowzero)
        if out_dims is None or len(out_dims) != len(resolved):
            out_dims = resolved
        else:
            out_dims = [r if r is not None else o for r, o in zip(resolved, out_dims, strict=True)]
    if entries is None:
        for elements in ctx.all_maps(x).values():
            ctx.freeze(elements, f"{_label(node)}: its target shape is computed at run time")
        return
    editable = [s is not None for s in sources or []]
    _map_reshape(ctx, node, in_dims, out_dims, entries, editable, allowzero)


def _inverse_reshape(ctx: Context, node: ir.Node, axis: int) -> tuple[ir.Value, int] | None:
    in_dims, out_dims = ctx.dims(node.inputs[0]), ctx.dims(node.outputs[0])
    groups = factor_dims(in_dims, out_dims) if in_dims is not None and out_dims is not None else None
    if groups is None or in_dims is None or out_dims is None:
        return None
    position = axis + len(out_dims)
    for gi, gj in groups:
        if gj == [position] and len(gi) == 1 and in_dims[gi[0]] == out_dims[position]:
            return node.inputs[0], gi[0] - len(in_dims)
    return None


INVERSE["Reshape"] = _inverse_reshape


@_rule("Flatten")
def _flatten(ctx: Context, node: ir.Node) -> None:
    """[d0..d(a-1) | da..] -> 2-D: a channel on the right expands to its block of positions."""
    in_dims = ctx.dims(node.inputs[0])
    if in_dims is None:
        _map_reshape(ctx, node, None, None, None, [])
        return
    along = _int(node, "axis", 1) % (len(in_dims) + 1) if in_dims else 0

    def product(dims: Dims) -> int | str | None:
        if all(isinstance(d, int) for d in dims):
            return math.prod(dims)  # type: ignore[arg-type]
        if len(dims) == 1 or sum(d != 1 for d in dims) == 1:
            return next(d for d in dims if d != 1)
        return None

    out_dims: Dims = [product(in_dims[:along]), product(in_dims[along:])]
    _map_reshape(ctx, node, in_dims, out_dims, None, [])


# -- resampling, padding, broadcasting ----------------------------------------------------
@_rule("Resize", "Upsample")
def _resize(ctx: Context, node: ir.Node) -> None:
    """Resampling works per channel: a channel axis passes when its scale is 1."""
    x, out = node.inputs[0], node.outputs[0]
    rank = ctx.rank(x)
    if rank is None:
        return
    if node.op_type == "Upsample" or ctx.opset < 11:
        scales = _floats(node, "scales") if ctx.opset < 9 else None
        if scales is None:
            array = ctx.const(_in(node, 1))
            scales = None if array is None else [float(v) for v in array.reshape(-1)]
        sizes = None
    else:
        array = ctx.const(_in(node, 2))
        scales = None if array is None or array.size == 0 else [float(v) for v in array.reshape(-1)]
        sizes = _const_ints(ctx, _in(node, 3)) if _in(node, 3) is not None else None
    axes = _ints(node, "axes")
    axes = [a % rank for a in axes] if axes else list(range(rank))
    crop = _str(node, "coordinate_transformation_mode", "") == "tf_crop_and_resize"
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
            ctx.freeze(elements, f"{_label(node)} resamples the channel axis")


@_rule("Pad")
def _pad(ctx: Context, node: ir.Node) -> None:
    """Padding is per axis: a channel axis passes when it is not padded."""
    x, out = node.inputs[0], node.outputs[0]
    rank = ctx.rank(x)
    if rank is None:
        return
    pads = _ints(node, "pads") if ctx.opset < 11 else _const_ints(ctx, _in(node, 1))
    axes = _const_ints(ctx, _in(node, 3)) if _in(node, 3) is not None else None
    axes = [a % rank for a in axes] if axes else list(range(rank))
    for axis, elements in ctx.all_maps(x).items():
        position = axis + rank
        if position in axes:
            index = axes.index(position)
            if pads is None or pads[index] != 0 or pads[index + len(axes)] != 0:
                ctx.freeze(elements, f"{_label(node)} pads the channel axis")
                continue
        ctx.set(out, axis, elements)


@_rule("Tile")
def _tile(ctx: Context, node: ir.Node) -> None:
    """Tiling is per axis: a channel axis passes when its repeat count is 1."""
    x, out = node.inputs[0], node.outputs[0]
    rank = ctx.rank(x)
    repeats = _const_ints(ctx, _in(node, 1))
    if rank is None:
        return
    for axis, elements in ctx.all_maps(x).items():
        if repeats is None or repeats[axis + rank] != 1:
            ctx.freeze(elements, f"{_label(node)} repeats the channel axis")
        else:
            ctx.set(out, axis, elements)


@_rule("Expand")
def _expand(ctx: Context, node: ir.Node) -> None:
    """Broadcast to a shape: a channel axis passes when the target keeps it (1 or its size)."""
    x, shape, out = node.inputs[0], node.inputs[1], node.outputs[0]
    entries = shape_entries(ctx, shape)
    sources = shape_sources(ctx, shape) or []
    for axis, elements in ctx.all_maps(x).items():
        inside = entries is not None and -axis <= len(entries)
        entry = entries[axis] if entries is not None and inside else 1
        editable = inside and sources[axis] is not None
        if entries is None or not (entry == 1 or (entry == elements.size and editable)):
            ctx.freeze(elements, f"{_label(node)}: the target shape of the channel axis is not constant")
        else:
            ctx.set(out, axis, elements)


def _inverse_expand(ctx: Context, node: ir.Node, axis: int) -> tuple[ir.Value, int] | None:
    size = ctx.dim(node.inputs[0], axis)
    return (node.inputs[0], axis) if size is not None and size > 1 else None


INVERSE["Expand"] = _inverse_expand


@_rule("Gather")
def _gather(ctx: Context, node: ir.Node) -> None:
    """y = data.take(indices, axis): other axes of data pass (an embedding's hidden dim)."""
    data, indices, out = node.inputs[0], node.inputs[1], node.outputs[0]
    rank, index_rank = ctx.rank(data), ctx.rank(indices)
    if rank is None or index_rank is None:
        return
    along = _int(node, "axis", 0) % rank
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
            ctx.freeze(elements, f"{_label(node)} selects channels by index")
            continue
        new = position if position < along else position + index_rank - 1
        ctx.set(out, new - out_rank, elements)


@_rule("Shape")
def _shape(ctx: Context, node: ir.Node) -> None:
    """Reads sizes: a channel axis in the read range freezes (its count must not change)."""
    x = node.inputs[0]
    rank = ctx.rank(x)
    for axis, elements in ctx.all_maps(x).items():
        if rank is None:
            ctx.freeze(elements, f"{_label(node)} reads the channel count")
            continue
        start, end = _int(node, "start", 0), _int(node, "end", rank)
        if axis + rank in range(rank)[slice(start, end)]:
            ctx.freeze(elements, f"{_label(node)} reads the channel count")


@_rule("Size")
def _size(ctx: Context, node: ir.Node) -> None:
    """Reads the element count: every channel axis of the input freezes."""
    ctx.freeze_value(node.inputs[0], f"{_label(node)} reads the element count")


@_rule("Constant", "ConstantOfShape")
def _constant(ctx: Context, node: ir.Node) -> None:
    """Produces a constant: channels appear on it when a consumer needs them."""
