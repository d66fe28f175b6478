"""Fold constant per-channel Mul/Div/Add/Sub next to Conv/Gemm/MatMul into weights and bias.

After the linear op (``c`` a constant that broadcasts along the output-channel axis only: axis 1
of Conv, the last axis of Gemm/MatMul; a scalar is per-channel too)::

    Conv(x, W, B) * c   -> Conv(x, W * c[:, None, ...], B * c)
    Conv(x, W, B) / c   -> Conv(x, W / c, B / c)               (c has no zeros)
    Conv(x, W, B) + c   -> Conv(x, W, B + c)
    Conv(x, W, B) - c   -> Conv(x, W, B - c)
    Gemm(A, B, C) op c  -> same algebra on B's output-feature axis (transB) and on beta*C
    MatMul(x, W) * c    -> MatMul(x, W * c[None, :])            (also / c)

Before the linear op, where exact (``c`` per input channel: axis 1 of Conv's input, the last
axis of MatMul's / Gemm's A)::

    Conv(x * c, W, B)   -> Conv(x, W * c[in-channel of each group], B)   (zero padding stays 0)
    Conv(x / c, W, B)   -> Conv(x, W / c[...], B)
    MatMul(x * c, W)    -> MatMul(x, W * c[:, None])
    Gemm(x * c, B, C)   -> Gemm(x, c-scaled B, C)   (transA = 0)

An Add/Sub *before* a padded Conv is not exact (padding would see 0 instead of c), and an
Add before a MatMul needs a new bias; both are left alone, as are: non-constant or non-finite
``c``, a ``c`` that would broadcast the result to a larger shape or varies along any axis but
the channel axis, ``c - y`` and ``c / y`` (not affine in the weights), weights/biases that are
graph inputs or shared with another node, a malformed grouped Conv weight whose output channels
do not split into its groups, and non-float tensors. Constants are combined in float64 and
stored in the weight's dtype. The channel axes, counts and group structure come from
:func:`irpass.analysis.layout.weight_layout` (the weight is input 1).

Our own rules because onnxscript's ``_fuse_conv_affine`` only folds *scalar* Mul+Add pairs
into Conv (and before the Conv only without padding); per-channel constants, Div/Sub, Gemm and
MatMul are not covered.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import onnx_ir as ir

from irpass.analysis.layout import WeightLayout, weight_layout
from irpass.passes.fusion._rules import (
    FusionRule,
    RuleSetPass,
    attr_float,
    const_array,
    node_of,
    rank_of,
    sole_user_is,
)
from irpass.registry import register

__all__ = ["FoldChannelAffinePass"]


def per_channel(c: np.ndarray, out_rank: int, axis: int, channels: int) -> np.ndarray | None:
    """``c`` as a (channels,) vector, or None when it is not per-channel.

    Per-channel means: ``c`` broadcasts along ``axis`` of a rank-``out_rank`` tensor only and
    never enlarges it.
    """
    if c.ndim > out_rank:
        return None
    axis = axis % out_rank
    padded = (1,) * (out_rank - c.ndim) + tuple(c.shape)
    for i, dim in enumerate(padded):
        if i == axis:
            if dim not in (1, channels):
                return None
        elif dim != 1:
            return None
    flat = np.asarray(c, dtype=np.float64).reshape(-1)
    if flat.size == 1:
        flat = np.full(channels, flat[0])
    if not np.all(np.isfinite(flat)):
        return None
    return flat


def _private(value: ir.Value | None, user: ir.Node) -> np.ndarray | None:
    if value is None or value.is_graph_input() or not sole_user_is(value, user):
        return None
    array = const_array(value)
    if array is None or array.dtype.kind != "f":
        return None
    return array


def _value_name(value: ir.Value | None) -> str:
    return (value.name if value is not None else None) or "w"


@dataclasses.dataclass(frozen=True)
class _Affine:
    """A fold's inputs: the linear node, its private weight (and bias), the channel vector."""

    node: ir.Node
    w: np.ndarray
    b: np.ndarray | None
    c: np.ndarray
    layout: WeightLayout


@dataclasses.dataclass(frozen=True)
class _Weights:
    """The private float weight (and bias) of a linear node and where its channels are."""

    w: np.ndarray
    b: np.ndarray | None
    layout: WeightLayout


def _weights(node: ir.Node) -> _Weights | str:
    """The private float weight (and bias) of ``node``, or why they cannot be rewritten."""
    w = _private(node.inputs[1] if len(node.inputs) > 1 else None, node)
    if w is None:
        return "weight is not a constant used only by this node (or is a graph input)"
    layout = weight_layout(node, weight_input=1)
    if layout is None:
        return f"{node.op_type} weight of shape {w.shape} has no channel layout"
    if not layout.groups_divide(w.shape):
        return f"{node.op_type} weight {w.shape} does not split into {layout.groups} groups"
    bias = node.inputs[2] if len(node.inputs) > 2 else None
    if bias is None:
        return _Weights(w, None, layout)
    b = _private(bias, node)
    if b is None:
        return "bias is not a constant used only by this node (or is a graph input)"
    return _Weights(w, b, layout)


class _AffineRule(FusionRule):
    """Shared emission: the linear node again, with new weight (and bias) initializers."""

    adds_initializers = True

    def emit(
        self, op: Any, x: Any, fold: _Affine, w: np.ndarray, b: np.ndarray | None,
        **overrides: Any,
    ) -> Any:
        node = fold.node
        dtype = fold.w.dtype
        base = _value_name(node.inputs[1])
        inputs = [x, self.new_initializer(op, w.astype(dtype), base, node)]
        if b is not None:
            bias = node.inputs[2] if len(node.inputs) > 2 else None
            bias_name = bias.name if bias is not None and bias.name else f"{base}_bias"
            inputs.append(self.new_initializer(op, b.astype(dtype), bias_name, node))
        attrs = dict(node.attributes)
        attrs.update(overrides)
        attrs = {k: v for k, v in attrs.items() if v is not None}
        return op.op(node.op_type, *inputs, **attrs)


def _data_rank(node: ir.Node, weights: _Weights, data: ir.Value | None) -> int | None:
    """Rank of the linear node's data input (= its output's rank) when known.

    Conv and Gemm keep the weight's rank; MatMul's is the data input's, with the weight 2-D
    (a batched weight would broadcast the output to more dimensions).
    """
    if node.op_type != "MatMul":
        return weights.layout.weight_rank
    return rank_of(data) if weights.w.ndim == 2 else None


class FoldAffineAfterLinear(_AffineRule):
    """linear(x, W, B) (*|/|+|-) c -> linear(x, W', B') for per-output-channel constant c."""

    stat = "after"

    def __init__(self, linear_op: str, arith: str, const_first: bool) -> None:
        super().__init__(f"{linear_op}_then_{arith}{'_const_first' if const_first else ''}")
        self.linear_op, self.arith, self.const_first = linear_op, arith, const_first

    def pattern(self, op: Any, x: Any, c: Any) -> Any:
        linear = getattr(op, self.linear_op)(x, _allow_other_inputs=True, _outputs=["lin_out"])
        args = (c, linear) if self.const_first else (linear, c)
        return getattr(op, self.arith)(*args)

    def plan(self, c: ir.Value, lin_out: ir.Value, **_: Any) -> _Affine | str:
        node = node_of(lin_out)
        wb = _weights(node)
        if isinstance(wb, str):
            return wb
        if self.linear_op == "MatMul" and self.arith in ("Add", "Sub"):
            return "MatMul has no bias to absorb an Add (matmul_add_to_gemm does)"
        c_array = const_array(c)
        if c_array is None or c_array.dtype.kind != "f":
            return "the other operand is not a float constant"
        out_rank = _data_rank(node, wb, node.inputs[0])
        if out_rank is None or out_rank < 1:
            return "the linear op's output rank is unknown"
        layout = wb.layout
        vec = per_channel(c_array, out_rank, layout.act_out_axis, layout.out_channels(wb.w.shape))
        if vec is None:
            return f"constant of shape {c_array.shape} is not per output channel"
        if self.arith == "Div" and np.any(vec == 0):
            return "division by a constant with zeros"
        return _Affine(node, wb.w, wb.b, vec, layout)

    def rewrite(self, op: Any, x: Any, **bindings: Any) -> Any:
        fold = self.planned(x=x, **bindings)
        node, c = fold.node, fold.c
        w = fold.w.astype(np.float64)
        b = None if fold.b is None else fold.b.astype(np.float64)
        overrides: dict[str, Any] = {}
        if node.op_type == "Gemm":
            # the new C carries beta already
            overrides["beta"] = None
            if b is not None:
                b = b * attr_float(node, "beta", 1.0)
        if self.arith in ("Mul", "Div"):
            scale = c if self.arith == "Mul" else 1.0 / c
            w = w * fold.layout.per_out_channel(scale, w.shape)
            if b is not None:
                b = b * scale
        else:
            shift = c if self.arith == "Add" else -c
            b = shift if b is None else b + shift
        if node.op_type == "MatMul":
            base = _value_name(node.inputs[1])
            w_value = self.new_initializer(op, w.astype(fold.w.dtype), base, node)
            return op.MatMul(x, w_value)
        return self.emit(op, x, fold, w, b, **overrides)


class FoldScaleBeforeLinear(_AffineRule):
    """linear(x (*|/) c, W, B) -> linear(x, W * c per input channel, B)."""

    stat = "before"

    def __init__(self, linear_op: str, arith: str, const_first: bool) -> None:
        super().__init__(f"{arith}{'_const_first' if const_first else ''}_then_{linear_op}")
        self.linear_op, self.arith, self.const_first = linear_op, arith, const_first

    def pattern(self, op: Any, x: Any, c: Any) -> Any:
        args = (c, x) if self.const_first else (x, c)
        scaled = getattr(op, self.arith)(*args, _outputs=["scaled"])
        return getattr(op, self.linear_op)(scaled, _allow_other_inputs=True, _outputs=["lin_out"])

    def plan(
        self, x: Any, c: ir.Value, scaled: ir.Value, lin_out: ir.Value, **_: Any
    ) -> _Affine | str:
        node = node_of(lin_out)
        if node.inputs[0] is not scaled:
            return "the scaled value is not the data input"
        wb = _weights(node)
        if isinstance(wb, str):
            return wb
        c_array = const_array(c)
        if c_array is None or c_array.dtype.kind != "f":
            return "the other operand is not a float constant"
        layout = wb.layout
        if node.op_type == "Gemm" and layout.act_in_axis != 1:
            return "Gemm reads A transposed"
        in_rank = _data_rank(node, wb, x)
        if in_rank is None or in_rank < 2:
            return "the linear op's input rank is unknown or < 2"
        vec = per_channel(c_array, in_rank, layout.act_in_axis, layout.in_channels(wb.w.shape))
        if vec is None:
            return f"constant of shape {c_array.shape} is not per input channel"
        if self.arith == "Div" and np.any(vec == 0):
            return "division by a constant with zeros"
        return _Affine(node, wb.w, wb.b, vec if self.arith == "Mul" else 1.0 / vec, layout)

    def rewrite(self, op: Any, x: Any, **bindings: Any) -> Any:
        fold = self.planned(x=x, **bindings)
        w = fold.w.astype(np.float64)
        w = w * fold.layout.per_in_channel(fold.c, w.shape)
        b = None if fold.b is None else fold.b.astype(np.float64)
        return self.emit(op, x, fold, w, b)


def _rules() -> list[FusionRule]:
    rules: list[FusionRule] = []
    for linear in ("Conv", "Gemm", "MatMul"):
        for arith in ("Mul", "Div", "Add", "Sub"):
            rules.append(FoldAffineAfterLinear(linear, arith, const_first=False))
        for arith in ("Mul", "Add"):
            rules.append(FoldAffineAfterLinear(linear, arith, const_first=True))
        rules.append(FoldScaleBeforeLinear(linear, "Mul", const_first=False))
        rules.append(FoldScaleBeforeLinear(linear, "Mul", const_first=True))
        rules.append(FoldScaleBeforeLinear(linear, "Div", const_first=False))
    return rules


@register
class FoldChannelAffinePass(RuleSetPass):
    """Fold constant per-channel Mul/Div/Add/Sub around Conv/Gemm/MatMul into the weights.

    See the module docstring for the algebra and the cases left alone.
    """

    name = "fold_channel_affine"
    lossless = True

    def phases(self) -> list[list[FusionRule]]:
        """One phase with every (linear op, arithmetic op, operand order) rule."""
        return [_rules()]
